"""Pixel records on disk: fixed-size uint8 images in one file, read by row with os.pread.

Training draws random rows every step, which Parquet's compressed row groups cannot serve
without reading whole groups. A split too large for the memory budget (trainer.data.train_set)
is therefore unpacked once, streamed from the shards, into one raw file per pixel column; a
batch is then a few `preadv` calls straight into the batch array. The reads go through the page
cache, which the kernel reclaims under pressure, so the process's resident memory stays one
batch whatever the split's size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from trainer.data.meta import InputsFormatError, InputsMeta, shard_paths
from trainer.data.pixels import taken_batches
from trainer.data.streaming import STREAM_ROWS, StreamedPixels, streamed_column, streamed_images
from trainer.data.tables import (
    IMAGE_CANVAS_COLUMN,
    QUERY_CANVAS_COLUMN,
    ImageStore,
    ReorderedPixels,
)


class PixelRecords:
    """`count` uint8 (S, S, 3) images stored back to back in `path`, by row."""

    def __init__(self, path: str | Path, count: int, image_size: int) -> None:
        self.path = Path(path)
        self.count, self.image_size = count, image_size
        self.record_bytes = image_size * image_size * 3
        size = self.path.stat().st_size
        if size != count * self.record_bytes:
            raise ValueError(f"{self.path} holds {size} bytes, expected {count} records of "
                             f"{self.record_bytes}; delete it and rerun training")
        self._fd: int | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        # DataLoader workers get the path, never this process's file descriptor.
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __len__(self) -> int:
        return self.count

    def _descriptor(self) -> int:
        """This process's read-only descriptor (reopened after a fork)."""
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def take(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Pixels (B, S, S, 3) of the given rows, read from disk (runs of rows in one call)."""
        rows = np.asarray(rows, dtype=np.int64)
        side = self.image_size
        out = np.empty((len(rows), side, side, 3), dtype=np.uint8)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.count:
            raise IndexError(f"row out of range 0..{self.count - 1} in {self.path}")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        fd = self._descriptor()
        # A run: consecutive destination slots (in sorted order) whose rows are consecutive or
        # equal; equal rows are read once and copied.
        distinct, first = np.unique(sorted_rows, return_index=True)
        buffer = np.empty((len(distinct), side, side, 3), dtype=np.uint8)
        breaks = np.flatnonzero(np.diff(distinct) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(distinct)], strict=True):
            self._read_into(fd, buffer[start:stop], int(distinct[start]))
        slot = np.searchsorted(distinct, sorted_rows)
        out[order] = buffer[slot]
        return out

    def _read_into(self, fd: int, target: np.ndarray, first_row: int) -> None:
        """Fill `target` (consecutive records from `first_row`) with preadv calls."""
        view = memoryview(target.reshape(-1))
        offset, done = first_row * self.record_bytes, 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], offset + done)
            if got == 0:
                raise OSError(f"{self.path} ended early at byte {offset + done}")
            done += got

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, pixels) of consecutive rows, `batch_size` at a time."""
        return taken_batches(self, batch_size)


def spill(source: StreamedPixels, path: str | Path) -> PixelRecords:
    """Write every row of a streamed pixel source to `path` as records; only a batch is held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record_bytes = source.image_size * source.image_size * 3
    with open(path, "wb") as handle:
        handle.truncate(len(source) * record_bytes)
        fd = handle.fileno()
        for positions, pixels in source.batches(STREAM_ROWS):
            # Rows arrive in shard order; each lands at its position.
            flat = pixels.reshape(len(positions), -1)
            for position, record in zip(positions.tolist(), flat, strict=True):
                os.pwrite(fd, record.data, position * record_bytes)
    return PixelRecords(path, len(source), source.image_size)


def spilled_image_store(inputs_dir: str | Path, image_ids: Sequence[str], meta: InputsMeta,
                        path: str | Path) -> ImageStore:
    """ImageStore of `image_ids` (same ids and rows as in memory) with its pixels as records."""
    wanted = set(image_ids)
    ids = [i for shard in shard_paths(inputs_dir, "images")
           for i in pq.read_table(shard, columns=["image_id"]).column("image_id").to_pylist()
           if i in wanted]
    records = spill(streamed_images(inputs_dir, ids, meta, "image {!r}"), path)
    return ImageStore.from_parts(inputs_dir, ids, records, meta)


def spilled_canvases(inputs_dir: str | Path, name: str, key: str, keys: Sequence[str],
                     meta: InputsMeta, path: str | Path, split: str | None = None
                     ) -> PixelRecords | ReorderedPixels:
    """load_canvases' rows (same order, same pixels) unpacked to records at `path`."""
    if meta.train_size is None:
        raise InputsFormatError(f"{inputs_dir}/meta.json has no train_size: the inputs hold no "
                                "training canvases; rebuild them with train.augment: official")
    column = QUERY_CANVAS_COLUMN if name == "queries" else IMAGE_CANVAS_COLUMN
    distinct = list(dict.fromkeys(keys))
    source = streamed_column(inputs_dir, name, key, distinct, column, meta.train_size,
                             "training canvas of {!r}", split)
    records = spill(source, path)
    if len(distinct) == len(keys):
        return records
    index = {k: i for i, k in enumerate(distinct)}
    return ReorderedPixels(records, np.array([index[k] for k in keys], dtype=np.int64))
