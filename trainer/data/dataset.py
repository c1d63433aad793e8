"""The training Dataset: whole batches of (tokens, visual-query pixels, target pixels) by row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from trainer.data.pixels import RowPixels
from trainer.data.records import spilled_canvases
from trainer.data.tables import ImageStore, QueryTable, load_canvases


class TripletDataset(Dataset):
    """Training triplets indexed by a list of rows: (tokens, visual pixels, target pixels).

    When the inputs carry training canvases (meta.train_size), batches hold those canvases
    instead of the model-size pixels, and the training step crops them (trainer.data.augment);
    `queries` and `images` keep the centre-crop pixels that cached features and validation use.
    """

    def __init__(self, queries: QueryTable, images: ImageStore,
                 spill_dir: Path | None = None,
                 canvases: tuple[RowPixels, RowPixels] | None = None) -> None:
        """`spill_dir`: unpack the training canvases there as records (trainer.data.records);
        `canvases`: (visual by query row, target by image row), made elsewhere
        (trainer.data.sources) instead of read from the shards."""
        self.queries = queries
        self.target_rows = images.rows(queries.target_ids, what=f"{queries.split} target_id")
        self.images = images
        self._visual, self._target = queries.visual, images.pixels
        if canvases is not None:
            self._visual, self._target = canvases
        elif images.meta.train_size is not None:
            self._visual = (
                self._canvases(spill_dir, "visual", "queries", "pair_id", queries.pair_ids,
                               queries.split)
                if queries.visual_ids is None  # else the raw reference images' own canvases
                else self._canvases(spill_dir, "visual", "images", "image_id",
                                    queries.visual_ids))
            self._target = self._canvases(spill_dir, "target", "images", "image_id", images.ids)

    def _canvases(self, spill_dir: Path | None, role: str, name: str, key: str,
                  keys: Sequence[str], split: str | None = None) -> RowPixels:
        """Training canvases of `keys`, in memory or (with `spill_dir`) unpacked to records."""
        inputs_dir, meta = self.images.inputs_dir, self.images.meta
        if spill_dir is None:
            return load_canvases(inputs_dir, name, key, keys, meta, split)
        return spilled_canvases(inputs_dir, name, key, keys, meta,
                                spill_dir / f"{role}-canvas.u8", split)

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """A whole batch at once (vectorised gathers, no per-sample Python work)."""
        rows = np.asarray(rows, dtype=np.int64)
        return {
            "index": torch.from_numpy(rows),
            "tokens": torch.from_numpy(self.queries.tokens[rows].astype(np.int64)),
            "visual": torch.from_numpy(self._visual.take(rows)),
            "target": torch.from_numpy(self._target.take(self.target_rows[rows])),
        }

