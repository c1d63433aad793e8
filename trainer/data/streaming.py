"""Pixel batches streamed from the input shards, so evaluation never holds a split's pixels.

A CIRR-sized split at 224 px is ~900 MB of uint8 pixels, and reading it through filtered
`read_table` calls briefly doubles that; evaluation needs each image once, in batches. So only
the id columns are read up front; the pixel column is read later in small record batches,
skipping row groups without a wanted row, and only the batch being embedded is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trainer.data.meta import InputsFormatError, InputsMeta, shard_paths
from trainer.data.pixels import pixel_chunk
from trainer.data.tables import QueryTable, query_table, read_query_fields

STREAM_ROWS = 64  # rows per Parquet record batch: ~10 MB of pixels at 224 px


@dataclass(frozen=True)
class ShardRows:
    """Which rows of one shard are wanted, and where each goes (-1: not wanted)."""

    path: Path
    positions: np.ndarray  # (shard rows,) int64
    ids: Sequence[str]  # record id per shard row, for error messages


class StreamedPixels:
    """The wanted rows' pixels of one binary column across shards, addressed by position."""

    def __init__(self, shards: Sequence[ShardRows], column: str, image_size: int) -> None:
        self.shards = list(shards)
        self.column = column
        self.image_size = image_size
        self._count = sum(int((s.positions >= 0).sum()) for s in self.shards)

    def __len__(self) -> int:
        return self._count

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions (B,), uint8 pixels (B, S, S, 3)), in shard order, `batch_size` at a time."""
        side = self.image_size
        positions = np.empty(batch_size, dtype=np.int64)
        pixels = np.empty((batch_size, side, side, 3), dtype=np.uint8)
        filled = 0
        for rows, view in self._wanted_views():
            done = 0
            while done < len(rows):
                # A record batch may straddle two output batches.
                take = min(len(rows) - done, batch_size - filled)
                chosen = rows[done:done + take]
                positions[filled:filled + take] = chosen[:, 1]
                pixels[filled:filled + take] = view[chosen[:, 0]]
                filled, done = filled + take, done + take
                if filled == batch_size:
                    yield positions.copy(), pixels
                    pixels = np.empty_like(pixels)  # the caller may still hold the last one
                    filled = 0
        if filled:
            yield positions[:filled].copy(), pixels[:filled]

    def _wanted_views(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per record batch with wanted rows: ((row in batch, position) pairs, pixel view)."""
        for shard in self.shards:
            parquet = pq.ParquetFile(shard.path)
            first = 0
            for group in range(parquet.metadata.num_row_groups):
                size = parquet.metadata.row_group(group).num_rows
                if (shard.positions[first:first + size] >= 0).any():  # else skip the group
                    yield from self._group_views(parquet, shard, group, first)
                first += size

    def _group_views(self, parquet: pq.ParquetFile, shard: ShardRows, group: int, first: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """_wanted_views of one row group, whose first row is shard row `first`."""
        offset = first
        for batch in parquet.iter_batches(batch_size=STREAM_ROWS, row_groups=[group],
                                          columns=[self.column]):
            wanted = shard.positions[offset:offset + batch.num_rows]
            local = np.flatnonzero(wanted >= 0)
            if local.size:
                column, rows = batch.column(0), local
                if column.null_count:
                    # rows no one reads here have no pixels (render.train_visual: loader
                    # stores the train images' files instead): view the wanted rows only
                    column, rows = column.take(pa.array(local)), np.arange(local.size)
                    shard_rows = offset + local
                else:
                    shard_rows = offset + np.arange(batch.num_rows)

                def record_id(row: int, at: np.ndarray = shard_rows,
                              ids: Sequence[str] = shard.ids) -> str:
                    return ids[int(at[row])]

                view = pixel_chunk(column, self.image_size, record_id, shard.path)
                yield np.stack([rows, wanted[local]], axis=1), view
            offset += batch.num_rows


def streamed_queries(inputs_dir: str | Path, split: str, meta: InputsMeta) -> QueryTable:
    """One split's queries with ids and tokens in memory and visual pixels streamed."""
    fields, shards, count = [], [], 0
    for path in shard_paths(inputs_dir, "queries"):
        shard = read_query_fields(path, split, meta)
        fields.append(shard)
        rows = pq.read_metadata(path).num_rows
        positions = np.full(rows, -1, dtype=np.int64)
        positions[shard.rows] = np.arange(count, count + len(shard.rows))
        ids = np.full(rows, "", dtype=object)
        ids[shard.rows] = shard.pair_ids
        shards.append(ShardRows(path, positions, ids))
        count += len(shard.rows)
    visual = StreamedPixels(shards, "visual_pixels", meta.image_size)
    return query_table(split, fields, visual, meta, inputs_dir)


def streamed_gallery(inputs_dir: str | Path, split: str, gallery_ids: Sequence[str],
                     meta: InputsMeta) -> StreamedPixels:
    """Pixels of the gallery images, position = index in `gallery_ids` (ids checked now)."""
    return streamed_images(inputs_dir, gallery_ids, meta,
                           f"gallery image {{!r}} of split {split!r}")


def streamed_images(inputs_dir: str | Path, image_ids: Sequence[str], meta: InputsMeta,
                    what: str) -> StreamedPixels:
    """Pixels of distinct images, position = index in `image_ids` (ids checked now).

    `what` names a missing image in the error, with `{!r}` where its id goes.
    """
    return streamed_column(inputs_dir, "images", "image_id", image_ids, "pixels",
                           meta.image_size, what)


def streamed_column(inputs_dir: str | Path, name: str, key: str, keys: Sequence[str],
                    column: str, side: int, what: str, split: str | None = None
                    ) -> StreamedPixels:
    """A pixel `column` of the `name` shards for distinct `keys`, position = index in `keys`.

    `key` is the id column (image_id, pair_id); `split` keeps one split's rows of query shards.
    Each key must occur once; `what` names a missing one in the error (`{!r}`: the key).
    """
    position = {k: i for i, k in enumerate(keys)}
    shards, found = [], np.zeros(len(keys), dtype=bool)
    for path in shard_paths(inputs_dir, name):
        if column not in pq.read_schema(path).names:
            raise InputsFormatError(f"{path}: no {column!r} column; rerun the `inputs` stage")
        columns = [key] + (["split"] if split is not None else [])
        table = pq.read_table(path, columns=columns)
        ids = table.column(key).to_pylist()
        positions = np.array([position.get(i, -1) for i in ids], dtype=np.int64)
        if split is not None:
            positions[np.asarray(table.column("split").to_pylist()) != split] = -1
        wanted = positions[positions >= 0]
        if found[wanted].any() or len(np.unique(wanted)) != len(wanted):
            dup = keys[next(p for p in wanted if found[p] or (wanted == p).sum() > 1)]
            raise InputsFormatError(f"{key.replace('_', ' ')} {dup!r} appears more than once "
                                    f"in {inputs_dir}")
        found[wanted] = True
        shards.append(ShardRows(path, positions, ids))
    if not found.all():
        missing = keys[int(np.flatnonzero(~found)[0])]
        shard_kind = {"images": "image", "queries": "query"}.get(name, name)
        raise InputsFormatError(f"{what.format(missing)} is not in the {shard_kind} shards of "
                                f"{inputs_dir}; rerun the `inputs` stage")
    return StreamedPixels(shards, column, side)


class RepeatedPixels:
    """Pixels of distinct images, streamed once each and handed to every row that uses them.

    A reference image shared by several queries is read and decoded once; only the batch being
    embedded is held, so a split's references are never all in memory.
    """

    def __init__(self, images: StreamedPixels, image_of_row: np.ndarray) -> None:
        self.images = images
        self._count = len(image_of_row)
        order = np.argsort(image_of_row, kind="stable")
        starts = np.searchsorted(image_of_row[order], np.arange(len(images) + 1))
        # rows using image u: order[starts[u]:starts[u + 1]], in row order
        self._order, self._starts = order, starts

    def __len__(self) -> int:
        return self._count

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows (B,), uint8 pixels (B, S, S, 3)) covering every row once, in image order."""
        side = self.images.image_size
        rows_out = np.empty(batch_size, dtype=np.int64)
        pixels_out = np.empty((batch_size, side, side, 3), dtype=np.uint8)
        filled = 0
        for positions, pixels in self.images.batches(STREAM_ROWS):
            counts = self._starts[positions + 1] - self._starts[positions]
            rows = np.concatenate([self._order[self._starts[u]:self._starts[u + 1]]
                                   for u in positions.tolist()])
            source = np.repeat(np.arange(len(positions)), counts)
            done = 0
            while done < len(rows):
                take = min(len(rows) - done, batch_size - filled)
                rows_out[filled:filled + take] = rows[done:done + take]
                pixels_out[filled:filled + take] = pixels[source[done:done + take]]
                filled, done = filled + take, done + take
                if filled == batch_size:
                    yield rows_out.copy(), pixels_out
                    pixels_out = np.empty_like(pixels_out)  # the caller may hold the last one
                    filled = 0
        if filled:
            yield rows_out[:filled].copy(), pixels_out[:filled]
