"""Query and image tables of the input shards: ids, token ids and pixels held in memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainer.data.meta import InputsFormatError, InputsMeta, read_meta, shard_paths
from trainer.data.pixels import PixelSource, PixelStore, RowPixels, pixel_chunks, taken_batches

QUERY_COLUMNS = ("split", "pair_id", "reference_id", "target_id", "text_tokens", "visual_pixels")


# Training canvases (R*R*3 uint8, R = meta.train_size), present when inputs were built for
# `train.augment: official`; trainer.data.augment crops them per batch.
QUERY_CANVAS_COLUMN, IMAGE_CANVAS_COLUMN = "visual_canvas", "canvas"


def token_matrix(column: pa.ChunkedArray, context_length: int, ids: pa.ChunkedArray,
                  source: Path) -> np.ndarray:
    """Turn a list<int32> column into an int32 (N, L) matrix, checking every length."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if len(array) == 0:
        return np.zeros((0, context_length), dtype=np.int32)
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(lengths != context_length)
    if wrong.size:
        raise InputsFormatError(f"{source}: record {ids[int(wrong[0])].as_py()!r} has "
                                f"{lengths[wrong[0]]} tokens, expected {context_length}")
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.int32, copy=False).reshape(-1, context_length)


@dataclass
class QueryTable:
    """All queries of one split: ids, token ids (N, L) and visual-query pixels."""

    split: str
    pair_ids: list[str]
    reference_ids: list[str]
    target_ids: list[str]
    tokens: np.ndarray
    visual: PixelSource  # random access (`take`) only when a PixelStore
    # image id of each visual query when it is a stored image (the raw reference,
    # trainer.data.raw); None when it is the drawn visual query of the query shards
    visual_ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.pair_ids)


@dataclass
class QueryFields:
    """One shard's queries of a split without pixels: which shard rows they are, ids, tokens."""

    rows: np.ndarray  # (n,) int64 rows of the shard holding the split's queries
    pair_ids: list[str]
    reference_ids: list[str]
    target_ids: list[str]
    tokens: np.ndarray  # (n, L) int32


def read_query_fields(path: Path, split: str, meta: InputsMeta) -> QueryFields:
    """Read a query shard's id and token columns (never its pixels) and keep `split`'s rows."""
    schema_names = pq.read_schema(path).names
    missing = [c for c in QUERY_COLUMNS if c not in schema_names]
    if missing:
        raise InputsFormatError(f"{path}: missing columns {missing}")
    table = pq.read_table(path, columns=list(QUERY_COLUMNS[:5]))
    rows = np.flatnonzero(pc.equal(table.column("split"), split).to_numpy(zero_copy_only=False))
    table = table.take(pa.array(rows))
    ids = table.column("pair_id")
    return QueryFields(
        rows=rows.astype(np.int64),
        pair_ids=ids.to_pylist(),
        reference_ids=table.column("reference_id").to_pylist(),
        target_ids=table.column("target_id").to_pylist(),
        tokens=token_matrix(table.column("text_tokens"), meta.context_length, ids, path),
    )


def query_table(split: str, fields: Sequence[QueryFields], visual: PixelSource,
                meta: InputsMeta, inputs_dir: str | Path) -> QueryTable:
    """A QueryTable from the shards' fields (in shard order) and a pixel source for them."""
    pair_ids = [p for f in fields for p in f.pair_ids]
    if len(set(pair_ids)) != len(pair_ids):
        raise InputsFormatError(f"duplicate pair_id in split {split!r} of {inputs_dir}")
    return QueryTable(
        split=split,
        pair_ids=pair_ids,
        reference_ids=[r for f in fields for r in f.reference_ids],
        target_ids=[t for f in fields for t in f.target_ids],
        tokens=(np.concatenate([f.tokens for f in fields]) if fields
                else np.zeros((0, meta.context_length), np.int32)),
        visual=visual,
    )


def load_queries(inputs_dir: str | Path, split: str, meta: InputsMeta | None = None) -> QueryTable:
    """Load one split's queries, pixels held in memory, in shard then (split, pair_id) order."""
    meta = meta or read_meta(inputs_dir)
    fields, pixels = [], []
    for path in shard_paths(inputs_dir, "queries"):
        shard = read_query_fields(path, split, meta)
        fields.append(shard)
        if len(shard.rows):
            table = pq.read_table(path, columns=["pair_id", "visual_pixels"],
                                  filters=[("split", "==", split)])
            pixels.extend(pixel_chunks(table.column("visual_pixels"), meta.image_size,
                                        table.column("pair_id"), path))
    return query_table(split, fields, PixelStore(pixels, meta.image_size), meta, inputs_dir)


class ImageStore:
    """Image pixels by image id, holding only the requested ids (or all when None)."""

    def __init__(self, inputs_dir: str | Path, image_ids: Iterable[str] | None = None,
                 meta: InputsMeta | None = None) -> None:
        meta = meta or read_meta(inputs_dir)
        wanted = None if image_ids is None else sorted(set(image_ids))
        self.ids: list[str] = []
        chunks = []
        for path in shard_paths(inputs_dir, "images"):
            filters = None if wanted is None else [("image_id", "in", wanted)]
            if wanted is not None and not wanted:
                break
            table = pq.read_table(path, columns=["image_id", "pixels"], filters=filters)
            ids = table.column("image_id")
            self.ids.extend(ids.to_pylist())
            chunks.extend(pixel_chunks(table.column("pixels"), meta.image_size, ids, path))
        self._set(inputs_dir, PixelStore(chunks, meta.image_size), meta)

    @classmethod
    def from_parts(cls, inputs_dir: str | Path, ids: list[str], pixels: RowPixels,
                   meta: InputsMeta) -> ImageStore:
        """A store over pixels read elsewhere (e.g. trainer.data.records), row i = ids[i]."""
        store = cls.__new__(cls)
        store.ids = list(ids)
        store._set(inputs_dir, pixels, meta)
        return store

    def _set(self, inputs_dir: str | Path, pixels: RowPixels, meta: InputsMeta) -> None:
        """Index `self.ids` (refusing duplicates) and keep the pixels and where they came from."""
        self._row = {image_id: row for row, image_id in enumerate(self.ids)}
        if len(self._row) != len(self.ids):
            dup = next(i for i in self.ids if self.ids.count(i) > 1)
            raise InputsFormatError(f"image id {dup!r} appears more than once in {inputs_dir}")
        self.pixels = pixels
        self.inputs_dir = Path(inputs_dir)
        self.meta = meta

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._row

    def rows(self, image_ids: Sequence[str], what: str = "image") -> np.ndarray:
        """Row of each id; a missing id raises an error naming it."""
        try:
            return np.array([self._row[i] for i in image_ids], dtype=np.int64)
        except KeyError as err:
            raise InputsFormatError(
                f"{what} {err.args[0]!r} is not in the image shards of {self.inputs_dir}; "
                "the `inputs` stage must write every referenced image"
            ) from None

    def take(self, image_ids: Sequence[str]) -> np.ndarray:
        """Pixels (B, S, S, 3) uint8 of the given image ids."""
        return self.pixels.take(self.rows(image_ids))


def load_canvases(inputs_dir: str | Path, name: str, key: str, keys: Sequence[str],
                  meta: InputsMeta, split: str | None = None) -> PixelStore | ReorderedPixels:
    """Training canvases of the `name` shards, rows in the order of `keys` (ids in `key`)."""
    column = QUERY_CANVAS_COLUMN if name == "queries" else IMAGE_CANVAS_COLUMN
    side = meta.train_size
    if side is None:
        raise InputsFormatError(f"{inputs_dir}/meta.json has no train_size: the inputs hold no "
                                "training canvases; rebuild them with train.augment: official")
    wanted = sorted(set(keys))
    ids, chunks = [], []
    for path in shard_paths(inputs_dir, name):
        if column not in pq.read_schema(path).names:
            raise InputsFormatError(f"{path}: no {column!r} column; rerun the `inputs` stage")
        filters = [(key, "in", wanted)] + ([("split", "==", split)] if split else [])
        table = pq.read_table(path, columns=[key, column], filters=filters)
        ids.extend(table.column(key).to_pylist())
        chunks.extend(pixel_chunks(table.column(column), side, table.column(key), path))
    store = PixelStore(chunks, side)
    row_of = {k: i for i, k in enumerate(ids)}
    missing = [k for k in keys if k not in row_of]
    if missing:
        raise InputsFormatError(f"{inputs_dir}: no training canvas for {missing[0]!r}")
    order = np.array([row_of[k] for k in keys], dtype=np.int64)
    return store if np.array_equal(order, np.arange(len(ids))) else ReorderedPixels(store, order)


class ReorderedPixels:
    """Row-addressed pixels read through a row map (shard order differs, or rows repeat)."""

    def __init__(self, store: RowPixels, order: np.ndarray) -> None:
        self._store, self._order = store, order

    def __len__(self) -> int:
        return len(self._order)

    def take(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Pixels of the given rows, as PixelStore.take."""
        return self._store.take(self._order[np.asarray(rows, dtype=np.int64)])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, pixels) of consecutive rows, `batch_size` at a time."""
        return taken_batches(self, batch_size)


def split_column_parts(inputs_dir: str | Path, queries: QueryTable, column: str, why: str
                       ) -> Iterator[tuple[np.ndarray, pa.Table, Path]]:
    """Per query shard: (table row of each of its split rows, -1 if none; its (pair_id,
    `column`) rows of the split; the shard). `why` ends the error when a shard lacks it."""
    row_of = {pair: row for row, pair in enumerate(queries.pair_ids)}
    for path in shard_paths(inputs_dir, "queries"):
        if column not in pq.read_schema(path).names:
            raise InputsFormatError(f"{path} has no {column!r} column ({why}); rerun the "
                                    "`inputs` stage")
        table = pq.read_table(path, columns=["pair_id", column],
                              filters=[("split", "==", queries.split)])
        rows = np.array([row_of.get(pair, -1) for pair in table.column(0).to_pylist()],
                        dtype=np.int64)
        yield rows, table, path
