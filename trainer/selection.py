"""Validation scores that pick the best epoch: R@K, CIRR Rsubset@K and the sum of those named.

The official code picks the epoch by a sum of recalls (FashionIQ / Shoes R@10 + R@50, Fashion200K
R@1 + R@10 + R@50 with caption-equality hits, CIRR all four R@K and the three Rsubset@K);
`train.val_metric` names them and `train.val_hit_rule` picks the hit rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from trainer import protocols
from trainer.data import InputsFormatError
from trainer.evaluate import EvalSplit, rank_queries

# pair id -> gallery image ids of the query's CIRR subset (img_set.members)
Subsets = Mapping[str, Sequence[str]]
Captions = Mapping[str, str]  # image id -> caption (Fashion200K caption-equality hits)


@dataclass(frozen=True)
class ValScoring:
    """How validation scores: cut-offs, and per-query data that the input shards lack."""

    ks: tuple[int, ...]
    subset_ks: tuple[int, ...] = ()
    subsets: Subsets | None = None
    captions: Captions | None = None  # set: R@K counts any image with the target's caption


def val_scoring(names: Sequence[str], logged_ks: Sequence[int], hit_rule: str,
                subsets: Subsets | None, captions: Captions | None) -> ValScoring:
    """The scoring of `names` (plus R@K for `logged_ks`); ValueError when data is missing."""
    ks, subset_ks = metric_cutoffs(names)
    if subset_ks and subsets is None:
        raise ValueError("train.val_metric names Rsubset@K, which needs each val query's "
                         "subset members (CIRR); none were given")
    if hit_rule == "caption" and captions is None:
        raise ValueError("train.val_hit_rule caption needs the image captions (Fashion200K); "
                         "none were given")
    return ValScoring(ks=tuple(sorted({*logged_ks, *ks})), subset_ks=subset_ks,
                      subsets=subsets if subset_ks else None,
                      captions=captions if hit_rule == "caption" else None)


def metric_cutoffs(names: Sequence[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The K of every R@K and of every Rsubset@K in `names`, each sorted."""
    ks, subset_ks = set(), set()
    for name in names:
        match = re.fullmatch(r"(R|Rsubset)@([1-9][0-9]*)", name)
        if match is None:
            raise ValueError(f"val metric {name!r} must look like 'R@10' or 'Rsubset@1'")
        (ks if match[1] == "R" else subset_ks).add(int(match[2]))
    return tuple(sorted(ks)), tuple(sorted(subset_ks))


def subset_index(data: EvalSplit, subsets: Subsets) -> list[list[int]]:
    """Gallery positions of each val query's subset members (-1 for one outside the gallery)."""
    position = {image_id: i for i, image_id in enumerate(data.gallery_ids)}
    out = []
    for pair in data.queries.pair_ids:
        members = subsets.get(pair)
        if members is None:
            raise InputsFormatError(f"val query {pair} has no subset members; Rsubset@K "
                                    "validation needs CIRR data")
        out.append([position.get(m, -1) for m in members])
    return out


def score_val(query_features: torch.Tensor, gallery_features: torch.Tensor, data: EvalSplit,
              scoring: ValScoring, batch_size: int) -> dict[str, float]:
    """R@K (target or caption hits) and, with subset members, Rsubset@K, in percent."""
    if not data.gallery_ids:
        raise InputsFormatError("the val split has an empty gallery")
    captions = scoring.captions
    # Top ids only for caption hits; target-hit recall needs target ranks alone.
    result = rank_queries(query_features, gallery_features, data, scoring.ks,
                          max(scoring.ks) if captions is not None else 0, batch_size)
    metrics = dict(result.metrics)
    if captions is not None:
        wanted = [captions.get(t) for t in data.queries.target_ids]
        metrics = protocols.caption_recall(result.top_ids, wanted, captions, scoring.ks)
    if scoring.subset_ks:
        # The target passed in: it ranks after the members tied with it, as in evaluate.
        rankings = protocols.subset_rankings(query_features, gallery_features,
                                             subset_index(data, scoring.subsets),
                                             data.reference_index, data.target_index)
        metrics |= protocols.recall_subset(rankings, data.target_index.tolist(),
                                           scoring.subset_ks)
    return metrics


def selection_score(metrics: Mapping[str, float], names: Sequence[str]) -> float:
    """The sum of the named metrics: what the best epoch maximises."""
    return float(sum(metrics[name] for name in names))
