"""The train split made per batch from stored image files (inputs built with
`render.train_visual: loader`, meta.json `train_sources: true`).

Fashion200K draws a pool of pairs per source image (8 in the official sampling); storing each
pair's drawn query is ~1.4 M images, far beyond any disk at 224 px. So, as the official loader
does, the query is drawn when the sample is loaded: the image shards hold the train images'
files as they are (a fraction of their pixels' size), which are unpacked once to one file under
the run's `.pixels/` folder (bounded memory, like trainer.data.records) and read back per sample;
an `ImageMaker` the caller provides (pipeline.core.loader_images: render's own drawing and the
inputs stage's geometry) turns a file and its keywords into the pixels render and inputs would
have stored. The trainer never imports the pipeline: the maker is handed in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow.parquet as pq

from trainer.data.dataset import TripletDataset
from trainer.data.meta import InputsFormatError, InputsMeta, shard_paths
from trainer.data.pixels import taken_batches
from trainer.data.raw import modification_tokens
from trainer.data.tables import ImageStore, QueryTable, split_column_parts

SOURCE_COLUMN, KEYWORDS_COLUMN = "source", "keywords"


class ImageMaker(Protocol):
    """A stored image file (+ keywords to draw, or None) -> uint8 (side, side, 3) pixels."""

    def __call__(self, source: bytes, keywords: Sequence[str] | None, side: int
                 ) -> np.ndarray: ...


class SourceFiles:
    """Image files stored in one file, read by position (start, length) with os.pread."""

    def __init__(self, path: Path, starts: np.ndarray, lengths: np.ndarray) -> None:
        self.path, self.starts, self.lengths = Path(path), starts, lengths
        self._fd: int | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        # DataLoader workers get the path, never this process's file descriptor.
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __len__(self) -> int:
        return len(self.starts)

    def get(self, position: int) -> bytes:
        """The bytes of the file at `position`."""
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        start, size = int(self.starts[position]), int(self.lengths[position])
        data = os.pread(self._fd, size, start)
        if len(data) != size:
            raise OSError(f"{self.path} ended early at byte {start + len(data)}")
        return data


def unpack_sources(inputs_dir: Path, image_ids: Sequence[str], path: Path) -> SourceFiles:
    """Write the stored files of `image_ids` (position = index) to `path`, a batch at a time."""
    position = {image_id: i for i, image_id in enumerate(image_ids)}
    lengths = np.full(len(image_ids), -1, dtype=np.int64)
    starts = np.zeros(len(image_ids), dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for shard in shard_paths(inputs_dir, "images"):
            if SOURCE_COLUMN not in pq.read_schema(shard).names:
                raise InputsFormatError(f"{shard}: no {SOURCE_COLUMN!r} column though meta.json "
                                        "says train_sources; rerun the `inputs` stage")
            for batch in pq.ParquetFile(shard).iter_batches(
                    batch_size=64, columns=["image_id", SOURCE_COLUMN]):
                files = batch.column(1)
                for row, image_id in enumerate(batch.column(0).to_pylist()):
                    at = position.get(image_id)
                    if at is None or lengths[at] >= 0:
                        continue
                    data = files[row].as_py()
                    if data is None:
                        raise InputsFormatError(f"{shard}: train image {image_id!r} has no "
                                                "stored file; rerun the `inputs` stage")
                    starts[at], lengths[at] = out.tell(), len(data)
                    out.write(data)
    if (lengths < 0).any():
        missing = image_ids[int(np.flatnonzero(lengths < 0)[0])]
        raise InputsFormatError(f"train image {missing!r} is not in the image shards of "
                                f"{inputs_dir}; rerun the `inputs` stage")
    return SourceFiles(path, starts, lengths)


class MadePixels:
    """Row-addressed pixels made per row from a stored file (and keywords) by an ImageMaker."""

    def __init__(self, files: SourceFiles, file_of_row: np.ndarray,
                 keywords: Sequence[Sequence[str]] | None, maker: ImageMaker,
                 side: int) -> None:
        self.files, self.file_of_row, self.keywords = files, file_of_row, keywords
        self.maker, self.image_size = maker, side

    def __len__(self) -> int:
        return len(self.file_of_row)

    def take(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Pixels (B, side, side, 3) of the given rows, each made now."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.image_size, self.image_size, 3), dtype=np.uint8)
        for slot, row in enumerate(rows.tolist()):
            words = None if self.keywords is None else self.keywords[row]
            out[slot] = self.maker(self.files.get(int(self.file_of_row[row])), words,
                                   self.image_size)
        return out

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, pixels) of consecutive rows, `batch_size` at a time."""
        return taken_batches(self, batch_size)


def train_keywords(inputs_dir: Path, queries: QueryTable) -> list[list[str]]:
    """Each train query's keywords (what the loader draws), in the table's row order."""
    out: list[list[str] | None] = [None] * len(queries)
    for rows, table, _ in split_column_parts(inputs_dir, queries, KEYWORDS_COLUMN,
                                             "though meta.json says train_sources"):
        for row, words in zip(rows.tolist(), table.column(1).to_pylist(), strict=True):
            if row >= 0:
                out[row] = list(words or [])
    missing = [queries.pair_ids[i] for i, words in enumerate(out) if words is None]
    if missing:
        raise InputsFormatError(f"query {queries.split}/{missing[0]} has no keywords in "
                                f"{inputs_dir}; rerun the `inputs` stage")
    return out


def made_train_set(inputs_dir: Path, queries: QueryTable, meta: InputsMeta,
                   raw_inputs: bool, maker: ImageMaker, spill_dir: Path) -> TripletDataset:
    """The train split over stored files: visual queries drawn, targets decoded, per batch.

    `queries` holds the split's ids and tokens (its stored pixels are null and never read);
    `raw_inputs`: the raw modification text and reference image (trainer.data.raw) instead.
    """
    ids = list(dict.fromkeys([*queries.reference_ids, *queries.target_ids]))
    files = unpack_sources(inputs_dir, ids, spill_dir / "sources.bin")
    index = {image_id: i for i, image_id in enumerate(ids)}
    reference_files = np.array([index[r] for r in queries.reference_ids], dtype=np.int64)
    every_file = np.arange(len(ids), dtype=np.int64)
    keywords = None if raw_inputs else train_keywords(inputs_dir, queries)
    side = meta.image_size

    def visual(at: int) -> MadePixels:
        return MadePixels(files, reference_files, keywords, maker, at)

    def images(at: int) -> MadePixels:
        return MadePixels(files, every_file, None, maker, at)

    if raw_inputs:
        queries = replace(queries, tokens=modification_tokens(inputs_dir, queries, meta),
                          visual_ids=list(queries.reference_ids))
    queries = replace(queries, visual=visual(side))
    store = ImageStore.from_parts(inputs_dir, ids, images(side), meta)
    canvases = None if meta.train_size is None else (visual(meta.train_size),
                                                     images(meta.train_size))
    return TripletDataset(queries, store, canvases=canvases)
