"""Retrieval evaluation of a DQU model on one split of the input shards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from trainer import distributed
from trainer.data import (
    InputsFormatError,
    InputsMeta,
    PixelSource,
    QueryTable,
    read_gallery,
    read_meta,
    to_model_pixels,
)
from trainer.fusion import DQUModel
from trainer.metrics import recall_from_ranks
from trainer.progress import Progress
from trainer.ranking import rank_targets
from trainer.runtime import Precision, autocast, eval_mode, resolve_device, resolve_precision
from trainer.streaming import StreamedPixels, streamed_gallery, streamed_queries


@dataclass
class EvalSplit:
    """One split's queries and gallery, with each query's target / reference gallery index."""

    meta: InputsMeta
    queries: QueryTable
    gallery_ids: list[str]
    gallery: StreamedPixels  # streamed in batches by embed_gallery
    target_index: torch.Tensor  # (Q,) int64, -1 where the target is not in the gallery
    reference_index: torch.Tensor  # (Q,) int64, -1 where the reference is not in the gallery


@dataclass
class EvalResult:
    """Recall metrics and, per query, the ranked top gallery image ids."""

    split: str
    metrics: dict[str, float]
    pair_ids: list[str]
    top_ids: list[list[str]]
    num_queries: int
    num_missing_targets: int
    # Per query, others scoring >= the target (G when missing); exact when ranked with
    # exact_ranks, else a rank >= max(ks) may be any value >= max(ks).
    target_ranks: list[int] = field(default_factory=list)


def load_eval_split(inputs_dir: str | Path, split: str) -> EvalSplit:
    """A split's query ids and tokens, its gallery ids and the index maps between them.

    Pixels are not read here: query and gallery pixels are streamed from the shards in
    batches when embedded (trainer.streaming), so a split's pixels are never all in memory.
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


def _scatter(parts: list[tuple[np.ndarray, torch.Tensor]], size: int) -> torch.Tensor:
    """Stack per-batch features (rows, (B, d)) into (size, d) by row."""
    first = parts[0][1]
    out = torch.empty(size, first.shape[1], dtype=first.dtype, device=first.device)
    for rows, feats in parts:
        out[torch.from_numpy(rows).to(first.device)] = feats
    return out


def _progress(unit: str, total: int) -> Progress:
    """Progress of one embedding pass, reported by the main process only (torchrun rank 0)."""
    return Progress(f"embed {unit}", total, unit, enabled=distributed.is_main_process())


@torch.inference_mode()
def embed_images(model: DQUModel, images: PixelSource, meta: InputsMeta, batch_size: int,
                 device: torch.device, precision: Precision) -> torch.Tensor:
    """Normalised target-side features (N, d) of every row of `images`, on `device`."""
    feats = []
    with eval_mode(model), autocast(device, precision), _progress("images", len(images)) as bar:
        for rows, pixels in images.batches(batch_size):
            pixels = torch.from_numpy(pixels).to(device)
            feats.append((rows, model.encode_image(to_model_pixels(pixels, meta.mean,
                                                                   meta.std)).float()))
            bar.update(len(rows))
    return _scatter(feats, len(images)) if feats else torch.zeros(0, 0, device=device)


def embed_gallery(model: DQUModel, data: EvalSplit, batch_size: int, device: torch.device,
                  precision: Precision) -> torch.Tensor:
    """Normalised target-side features (G, d) of the gallery, on `device`."""
    return embed_images(model, data.gallery, data.meta, batch_size, device, precision)


def _join(parts: list[tuple[np.ndarray, torch.Tensor | None]], size: int
          ) -> torch.Tensor | None:
    if not parts or parts[0][1] is None:
        return None
    return _scatter([(rows, feats.float()) for rows, feats in parts], size)


@torch.inference_mode()
def embed_query_parts(model: DQUModel, queries: QueryTable, meta: InputsMeta, batch_size: int,
                      device: torch.device, precision: Precision
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Normalised f_t and f_v (each (Q, d) or None when the mode skips it), on `device`."""
    text, visual = [], []
    with eval_mode(model), autocast(device, precision), _progress("queries",
                                                                  len(queries)) as bar:
        for rows, pixels in queries.visual.batches(batch_size):
            tokens = torch.from_numpy(queries.tokens[rows].astype(np.int64)).to(device)
            pixels = torch.from_numpy(pixels).to(device)
            f_t, f_v = model.encode_query_parts(tokens, to_model_pixels(pixels, meta.mean,
                                                                        meta.std))
            text.append((rows, f_t))
            visual.append((rows, f_v))
            bar.update(len(rows))
    return _join(text, len(queries)), _join(visual, len(queries))


@torch.inference_mode()
def fuse_queries(model: DQUModel, text: torch.Tensor | None, visual: torch.Tensor | None,
                 batch_size: int) -> torch.Tensor:
    """f_q from precomputed f_t / f_v in eval mode (dropout off)."""
    return fuse_with_weights(model, text, visual, batch_size)[0]


@torch.inference_mode()
def fuse_with_weights(model: DQUModel, text: torch.Tensor | None, visual: torch.Tensor | None,
                      batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """f_q and each query's text weight lambda (Q,) (None unless dqu), in eval mode."""
    size = (text if text is not None else visual).shape[0]
    out, weights = [], []
    with eval_mode(model):
        for start in range(0, size, batch_size):
            part = slice(start, start + batch_size)
            fused, weight = model.fuse(None if text is None else text[part],
                                       None if visual is None else visual[part])
            out.append(fused)
            weights.append(weight)
    lam = torch.cat(weights).reshape(-1) if weights and weights[0] is not None else None
    return torch.cat(out), lam


@torch.inference_mode()
def rank_queries(query_features: torch.Tensor, gallery_features: torch.Tensor, data: EvalSplit,
                 ks: Sequence[int], top_n: int, batch_size: int, *,
                 exact_ranks: bool = False) -> EvalResult:
    """Recall@K from target ranks (reference masked) and, when top_n > 0, the top gallery ids.

    top_n 0 leaves `top_ids` empty: recall needs only ranks, and only whether each is below
    max(ks). On CPU the query blocks are sized for the cache; on an accelerator they are
    `batch_size` queries. Top ids follow the tie rule of trainer.metrics.
    """
    device = gallery_features.device
    ranks, top = rank_targets(query_features, gallery_features, data.target_index,
                              data.reference_index, top_n=top_n,
                              block_rows=None if device.type == "cpu" else batch_size,
                              rank_cap=None if exact_ranks else max(ks, default=None))
    top_rows = top.tolist() if top is not None else []
    return EvalResult(
        split=data.queries.split,
        metrics=recall_from_ranks(ranks.cpu(), ks),
        pair_ids=list(data.queries.pair_ids),
        top_ids=[[data.gallery_ids[i] for i in row] for row in top_rows],
        num_queries=len(data.queries),
        num_missing_targets=int((data.target_index < 0).sum()),
        target_ranks=ranks.cpu().tolist(),
    )


@torch.inference_mode()
def encode_split(model: DQUModel, data: EvalSplit, batch_size: int, device: torch.device,
                 amp: str = "off") -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised fused query features (Q, d) and gallery features (G, d) of one split."""
    queries, _, gallery = encode_split_weighted(model, data, batch_size, device, amp)
    return queries, gallery


@torch.inference_mode()
def encode_split_weighted(model: DQUModel, data: EvalSplit, batch_size: int,
                          device: torch.device, amp: str = "off"
                          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Like encode_split, plus each query's lambda (None unless the model is dqu)."""
    text, visual, gallery = encode_split_parts(model, data, batch_size, device, amp)
    if text is None and visual is None:
        return torch.zeros(0, gallery.shape[1], device=device), None, gallery
    queries, lam = fuse_with_weights(model, text, visual, batch_size)
    return queries, lam, gallery


@torch.inference_mode()
def encode_split_parts(model: DQUModel, data: EvalSplit, batch_size: int, device: torch.device,
                       amp: str = "off"
                       ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """f_t and f_v of the split's queries (None: skipped by the mode or no queries) and the
    gallery features."""
    precision = resolve_precision(amp, device)
    gallery = embed_gallery(model, data, batch_size, device, precision)
    if len(data.queries) == 0:
        return None, None, gallery
    text, visual = embed_query_parts(model, data.queries, data.meta, batch_size, device,
                                     precision)
    return text, visual, gallery


def evaluate(model: DQUModel, inputs_dir: str | Path, split: str, ks: Sequence[int],
             batch_size: int, device: str | torch.device, *, amp: str = "off",
             top_n: int | None = None, data: EvalSplit | None = None) -> EvalResult:
    """Recall@K of `model` on `split` (gallery embedded once); `data` reuses a loaded split."""
    device = resolve_device(device) if isinstance(device, str) else device
    data = data if data is not None else load_eval_split(inputs_dir, split)
    if not data.gallery_ids:
        raise InputsFormatError(f"split {split!r} has an empty gallery in {inputs_dir}")
    top_n = max(ks) if top_n is None else top_n
    queries, gallery = encode_split(model, data, batch_size, device, amp)
    return rank_queries(queries, gallery, data, ks, top_n, batch_size)
