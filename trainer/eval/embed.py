"""Embedding a split: gallery features, query parts f_t / f_v, and f_q by the model's own fuse.

Every caller that needs features goes through here (evaluation, validation during training,
training-free scores, the index stage, `dqu search`), so a query is embedded one way only.
Always fp32 unless asked otherwise, as the official test code evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from trainer.data.meta import InputsMeta
from trainer.data.pixels import PixelSource, to_model_pixels
from trainer.data.tables import QueryTable
from trainer.eval.split import EvalSplit
from trainer.models.fusion import DQUModel
from trainer.runtime import Precision, autocast, eval_mode, is_main_process, resolve_precision
from trainer.util.progress import Progress


@dataclass
class SplitFeatures:
    """A split's normalised features: f_q per query, the gallery, and what f_q came from."""

    queries: torch.Tensor  # (Q, d) f_q
    gallery: torch.Tensor  # (G, d)
    weights: torch.Tensor | None = None  # (Q,) lambda, None unless the mode has one
    # (Q, d) f_t and f_v as the mode's fuse reads them (raw encoder outputs for combiner and
    # sum, else normalised); None when the mode skips one
    text: torch.Tensor | None = None
    visual: torch.Tensor | None = None

    def with_queries(self, queries: torch.Tensor) -> SplitFeatures:
        """The same gallery with other query features (e.g. f_t alone: the text ablation)."""
        return replace(self, queries=queries, weights=None)


def _scatter(parts: list[tuple[np.ndarray, torch.Tensor]], size: int) -> torch.Tensor:
    """Stack per-batch features (rows, (B, d)) into (size, d) by row."""
    first = parts[0][1]
    out = torch.empty(size, first.shape[1], dtype=first.dtype, device=first.device)
    for rows, feats in parts:
        out[torch.from_numpy(rows).to(first.device)] = feats
    return out


def _progress(unit: str, total: int, report: bool) -> Progress:
    """Progress of one embedding pass, reported by the main process only (torchrun rank 0)."""
    return Progress(f"embed {unit}", total, unit, enabled=report and is_main_process())


@torch.inference_mode()
def embed_images(model: DQUModel, images: PixelSource, meta: InputsMeta, batch_size: int,
                 device: torch.device, precision: Precision, report: bool = True
                 ) -> torch.Tensor:
    """Normalised target-side features (N, d) of every row of `images`, on `device`.

    `report` False: no progress line (a search answers many small requests).
    """
    feats = []
    with eval_mode(model), autocast(device, precision), _progress("images", len(images),
                                                                  report) as bar:
        for rows, pixels in images.batches(batch_size):
            pixels = torch.from_numpy(pixels).to(device)
            feats.append((rows, model.encode_image(to_model_pixels(pixels, meta.mean,
                                                                   meta.std)).float()))
            bar.update(len(rows))
    return _scatter(feats, len(images)) if feats else torch.zeros(0, 0, device=device)


def _join(parts: list[tuple[np.ndarray, torch.Tensor | None]], size: int
          ) -> torch.Tensor | None:
    if not parts or parts[0][1] is None:
        return None
    return _scatter([(rows, feats.float()) for rows, feats in parts], size)


@torch.inference_mode()
def embed_query_parts(model: DQUModel, queries: QueryTable, meta: InputsMeta, batch_size: int,
                      device: torch.device, precision: Precision, report: bool = True
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """f_t and f_v as the mode reads them (each (Q, d) or None when skipped), on `device`.

    `report` False: no progress line (a search answers many small requests).
    """
    text, visual = [], []
    with eval_mode(model), autocast(device, precision), _progress("queries", len(queries),
                                                                  report) as bar:
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
def fuse(model: DQUModel, text: torch.Tensor | None, visual: torch.Tensor | None,
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


def features_from_parts(model: DQUModel, text: torch.Tensor | None,
                        visual: torch.Tensor | None, gallery: torch.Tensor,
                        batch_size: int) -> SplitFeatures:
    """SplitFeatures from already embedded query parts and gallery (f_q by the model's fuse)."""
    if text is None and visual is None:
        empty = torch.zeros(0, gallery.shape[1], device=gallery.device)
        return SplitFeatures(empty, gallery)
    queries, weights = fuse(model, text, visual, batch_size)
    return SplitFeatures(queries, gallery, weights, text, visual)


def embed(model: DQUModel, split: EvalSplit, batch_size: int, device: torch.device,
          amp: str = "off") -> SplitFeatures:
    """The features of one split: gallery, query parts and f_q (lambda too, for dqu)."""
    precision = resolve_precision(amp, device)
    gallery = embed_images(model, split.gallery, split.meta, batch_size, device, precision)
    if len(split.queries) == 0:
        return features_from_parts(model, None, None, gallery, batch_size)
    text, visual = embed_query_parts(model, split.queries, split.meta, batch_size, device,
                                     precision)
    return features_from_parts(model, text, visual, gallery, batch_size)
