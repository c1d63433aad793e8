"""One split to evaluate: its queries, its gallery, where each target and reference sits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from trainer.data.meta import InputsFormatError, InputsMeta, read_gallery, read_meta
from trainer.data.pixels import PixelSource
from trainer.data.raw import raw_queries
from trainer.data.streaming import streamed_gallery, streamed_queries
from trainer.data.tables import QueryTable


@dataclass
class EvalSplit:
    """One split's queries and gallery, with each query's target / reference gallery index."""

    meta: InputsMeta
    queries: QueryTable
    gallery_ids: list[str]
    gallery: PixelSource | None  # streamed in batches by embedding; None: features given
    target_index: torch.Tensor  # (Q,) int64, -1 where the target is not in the gallery
    reference_index: torch.Tensor  # (Q,) int64, -1 where the reference is not in the gallery

    @property
    def name(self) -> str:
        """The split's name (train / val / test / ...)."""
        return self.queries.split

    @property
    def num_missing_targets(self) -> int:
        """Queries whose target is not in the gallery (never a hit)."""
        return int((self.target_index < 0).sum())


def load_eval_split(inputs_dir: str | Path, split: str) -> EvalSplit:
    """A split's query ids and tokens, its gallery ids and the index maps between them.

    Pixels are not read here: query and gallery pixels are streamed from the shards in
    batches when embedded (trainer.data.streaming), so a split's pixels are never all in memory.
    """
    meta = read_meta(inputs_dir)
    queries = streamed_queries(inputs_dir, split, meta)
    gallery_ids = read_gallery(inputs_dir, split)
    gallery = streamed_gallery(inputs_dir, split, gallery_ids, meta)
    position = {image_id: i for i, image_id in enumerate(gallery_ids)}
    return EvalSplit(
        meta=meta,
        queries=queries,
        gallery_ids=gallery_ids,
        gallery=gallery,
        target_index=torch.tensor([position.get(t, -1) for t in queries.target_ids],
                                  dtype=torch.long),
        reference_index=torch.tensor([position.get(r, -1) for r in queries.reference_ids],
                                     dtype=torch.long),
    )


def raw_split(split: EvalSplit, inputs_dir: str | Path) -> EvalSplit:
    """The split with raw queries (trainer.data.raw); gallery, targets, references unchanged.

    Reference pixels are streamed like the split's other pixels (each distinct one read once).
    """
    return replace(split, queries=raw_queries(split.queries, inputs_dir, split.meta,
                                              stream=True))


def subset_positions(split: EvalSplit, subsets: Mapping[str, Sequence[str]]
                     ) -> list[list[int]]:
    """Gallery positions of each query's CIRR subset members (-1 for one outside the gallery).

    `subsets` maps a pair id to its `img_set.members`; a query without one is an error that
    names it, since Rsubset@K needs CIRR data.
    """
    position = {image_id: i for i, image_id in enumerate(split.gallery_ids)}
    out = []
    for pair in split.queries.pair_ids:
        members = subsets.get(pair)
        if members is None:
            raise InputsFormatError(f"query {split.name}/{pair} has no subset members; "
                                    "Rsubset@K needs CIRR data (img_set.members)")
        out.append([position.get(m, -1) for m in members])
    return out
