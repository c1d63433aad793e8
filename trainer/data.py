"""Read the precomputed input shards (queries, images, galleries) written by the `inputs` stage.

Pixels stay as the raw uint8 bytes pyarrow read (viewed, not copied, as (N, S, S, 3) arrays);
conversion to normalised float CHW happens per batch on the training device.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset, Sampler

from trainer.shards import ShardError, list_shards

QUERY_COLUMNS = ("split", "pair_id", "reference_id", "target_id", "text_tokens", "visual_pixels")
# Training canvases (R*R*3 uint8, R = meta.train_size), present when inputs were built for
# `train.augment: official`; trainer.augment crops them per batch.
QUERY_CANVAS_COLUMN, IMAGE_CANVAS_COLUMN = "visual_canvas", "canvas"


class InputsFormatError(ValueError):
    """The input shards do not follow the documented schema."""


@dataclass(frozen=True)
class InputsMeta:
    """Contents of meta.json: backbone name and the input spec the shards were made for."""

    model: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    # side of the stored training canvases; None: inputs hold only model-size pixels
    train_size: int | None = None


def read_meta(inputs_dir: str | Path) -> InputsMeta:
    """Read and validate `inputs_dir/meta.json`."""
    path = Path(inputs_dir) / "meta.json"
    if not path.is_file():
        raise InputsFormatError(f"{path} not found; run the pipeline's `inputs` stage first")
    raw = json.loads(path.read_text())
    try:
        meta = InputsMeta(
            model=str(raw["model"]),
            image_size=int(raw["image_size"]),
            mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]),
            context_length=int(raw["context_length"]),
            train_size=None if raw.get("train_size") is None else int(raw["train_size"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise InputsFormatError(f"{path}: bad or missing field ({err!r}); expected keys "
                                "model, image_size, mean, std, context_length") from err
    if len(meta.mean) != 3 or len(meta.std) != 3:
        raise InputsFormatError(f"{path}: mean and std must have 3 values each")
    return meta


def inputs_digest(inputs_dir: str | Path) -> str:
    """A cheap identity of the input shards: names, sizes, row counts and footer metadata.

    Reading only Parquet footers keeps this fast for tens of GB; the pipeline's shards carry a
    content fingerprint in their metadata, so changed data changes the digest.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(inputs_dir).glob("*.parquet")):
        footer = pq.read_metadata(path)
        kv = footer.metadata or {}
        digest.update(f"{path.name}:{path.stat().st_size}:{footer.num_rows}".encode())
        for key in sorted(kv):
            digest.update(key + b"=" + kv[key] + b";")
    return digest.hexdigest()


def shard_paths(inputs_dir: str | Path, name: str) -> list[Path]:
    """The complete, ordered `NAME-0000i-of-0000N.parquet` shard set (trainer.shards)."""
    try:
        return list_shards(inputs_dir, name)
    except ShardError as err:
        # Readers of the inputs catch one error type for every malformed-inputs problem.
        raise InputsFormatError(str(err)) from err


def pixel_chunk(array: pa.Array, image_size: int, record_id: Callable[[int], str],
                source: Path) -> np.ndarray:
    """View one binary pixel chunk as uint8 (n, S, S, 3) without copying."""
    expected = image_size * image_size * 3
    if array.null_count:
        bad = record_id(pc.index(pc.is_null(array), True).as_py())
        raise InputsFormatError(f"{source}: record {bad!r} has null pixels")
    if len(array) == 0:
        return np.zeros((0, image_size, image_size, 3), dtype=np.uint8)
    if pa.types.is_fixed_size_binary(array.type):
        if array.type.byte_width != expected:
            raise InputsFormatError(f"{source}: pixels are {array.type.byte_width} bytes, "
                                    f"expected {expected} for image_size {image_size}")
        data = np.frombuffer(array.buffers()[1], dtype=np.uint8)
        start = array.offset * expected
        return data[start:start + len(array) * expected].reshape(-1, image_size, image_size, 3)
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        raise InputsFormatError(f"{source}: pixel column has type {array.type}, expected binary")
    offset_type = np.int32 if pa.types.is_binary(array.type) else np.int64
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)
    offsets = offsets[array.offset:array.offset + len(array) + 1]
    lengths = np.diff(offsets)
    wrong = np.flatnonzero(lengths != expected)
    if wrong.size:
        raise InputsFormatError(
            f"{source}: record {record_id(int(wrong[0]))!r} has {int(lengths[wrong[0]])} pixel "
            f"bytes, expected {expected} (= {image_size}x{image_size}x3 uint8 HWC); "
            "rerun the `inputs` stage"
        )
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data.reshape(-1, image_size, image_size, 3)


def _pixel_chunks(column: pa.ChunkedArray, image_size: int, ids: pa.ChunkedArray,
                  source: Path) -> list[np.ndarray]:
    """Zero-copy uint8 (n, S, S, 3) views of every chunk of a binary pixel column.

    Chunks are kept apart (never combined) so no copy is made and no 2 GiB binary limit is hit.
    """
    views, first_row = [], 0
    for chunk in column.chunks:
        def record_id(row: int, base: int = first_row) -> str:
            return ids[base + row].as_py()

        views.append(pixel_chunk(chunk, image_size, record_id, source))
        first_row += len(chunk)
    return views


def _token_matrix(column: pa.ChunkedArray, context_length: int, ids: pa.ChunkedArray,
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


class PixelStore:
    """Uint8 HWC pixel arrays from several shards, addressed by one global row index."""

    def __init__(self, chunks: Sequence[np.ndarray], image_size: int) -> None:
        self.image_size = image_size
        self._chunks = [c for c in chunks if len(c)]
        self._starts = np.cumsum([0] + [len(c) for c in self._chunks])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, pixels) of consecutive rows, `batch_size` at a time."""
        for start in range(0, len(self), batch_size):
            rows = np.arange(start, min(start + batch_size, len(self)))
            yield rows, self.take(rows)

    def take(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Pixels of the given global rows as a new (B, S, S, 3) uint8 array."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.image_size, self.image_size, 3), dtype=np.uint8)
        chunk_of = np.searchsorted(self._starts, rows, side="right") - 1
        for chunk_id in np.unique(chunk_of):
            selected = chunk_of == chunk_id
            out[selected] = self._chunks[chunk_id][rows[selected] - self._starts[chunk_id]]
        return out


class PixelSource(Protocol):
    """Pixels addressed by row: held in memory (PixelStore) or streamed (trainer.streaming)."""

    def __len__(self) -> int: ...

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows (B,), uint8 pixels (B, S, S, 3)) covering every row once."""
        ...


@dataclass
class QueryTable:
    """All queries of one split: ids, token ids (N, L) and visual-query pixels."""

    split: str
    pair_ids: list[str]
    reference_ids: list[str]
    target_ids: list[str]
    tokens: np.ndarray
    visual: PixelSource  # random access (`take`) only when a PixelStore

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
        tokens=_token_matrix(table.column("text_tokens"), meta.context_length, ids, path),
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
            pixels.extend(_pixel_chunks(table.column("visual_pixels"), meta.image_size,
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
            chunks.extend(_pixel_chunks(table.column("pixels"), meta.image_size, ids, path))
        self._row = {image_id: row for row, image_id in enumerate(self.ids)}
        if len(self._row) != len(self.ids):
            dup = next(i for i in self.ids if self.ids.count(i) > 1)
            raise InputsFormatError(f"image id {dup!r} appears more than once in {inputs_dir}")
        self.pixels = PixelStore(chunks, meta.image_size)
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


def read_gallery(inputs_dir: str | Path, split: str) -> list[str]:
    """Image ids forming one split's retrieval gallery, de-duplicated in file order."""
    path = Path(inputs_dir) / "gallery.parquet"
    if not path.is_file():
        raise InputsFormatError(f"{path} not found; run the pipeline's `inputs` stage first")
    table = pq.read_table(path, columns=["split", "image_id"], filters=[("split", "==", split)])
    return list(dict.fromkeys(table.column("image_id").to_pylist()))


def to_model_pixels(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]
                    ) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> float (B, 3, S, S): scaled to [0, 1], normalised per channel."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    # Copy into a contiguous NCHW buffer first, then work in place: the same values as
    # `(permute().float() / 255 - mean) / std`, but ~15x faster on CPU, where that expression
    # runs strided channels-last kernels and allocates three temporaries.
    chw = torch.empty((pixels.shape[0], 3, pixels.shape[1], pixels.shape[2]),
                      dtype=torch.float32, device=pixels.device)
    chw.copy_(pixels.permute(0, 3, 1, 2))
    return chw.div_(255.0).sub_(mean_t).div_(std_t)


def load_canvases(inputs_dir: str | Path, name: str, key: str, keys: Sequence[str],
                  meta: InputsMeta, split: str | None = None) -> PixelStore | _Reordered:
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
        chunks.extend(_pixel_chunks(table.column(column), side, table.column(key), path))
    store = PixelStore(chunks, side)
    row_of = {k: i for i, k in enumerate(ids)}
    missing = [k for k in keys if k not in row_of]
    if missing:
        raise InputsFormatError(f"{inputs_dir}: no training canvas for {missing[0]!r}")
    order = np.array([row_of[k] for k in keys], dtype=np.int64)
    return store if np.array_equal(order, np.arange(len(ids))) else _Reordered(store, order)


class _Reordered:
    """A PixelStore read through a row permutation (only when shard order differs)."""

    def __init__(self, store: PixelStore, order: np.ndarray) -> None:
        self._store, self._order = store, order

    def __len__(self) -> int:
        return len(self._order)

    def take(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Pixels of the given rows, as PixelStore.take."""
        return self._store.take(self._order[np.asarray(rows, dtype=np.int64)])


class TripletDataset(Dataset):
    """Training triplets indexed by a list of rows: (tokens, visual pixels, target pixels).

    When the inputs carry training canvases (meta.train_size), batches hold those canvases
    instead of the model-size pixels, and the training step crops them (trainer.augment);
    `queries` and `images` keep the centre-crop pixels that cached features and validation use.
    """

    def __init__(self, queries: QueryTable, images: ImageStore) -> None:
        self.queries = queries
        self.target_rows = images.rows(queries.target_ids, what=f"{queries.split} target_id")
        self.images = images
        self._visual, self._target = queries.visual, images.pixels
        if images.meta.train_size is not None:
            self._visual = load_canvases(images.inputs_dir, "queries", "pair_id",
                                         queries.pair_ids, images.meta, queries.split)
            self._target = load_canvases(images.inputs_dir, "images", "image_id", images.ids,
                                         images.meta)

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


# Stream of the (seed, epoch) generator that picks one_per_reference rows, apart from the one
# that shuffles (its key [seed, epoch] is unchanged, so `all` keeps its batches).
PICK_STREAM = 1


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of row indices, shuffled by a permutation derived only from (seed, epoch).

    Deriving the order from (seed, epoch) instead of a running RNG makes resumed runs see
    exactly the batches an uninterrupted run would. With world_size > 1 each rank takes a
    disjoint, equally sized slice. With `groups` (one key per row, e.g. its reference id) an
    epoch holds one row per distinct key, drawn from (seed, epoch), before shuffling.
    """

    def __init__(self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 groups: Sequence[str] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if groups is not None and len(groups) != size:
            raise ValueError(f"groups has {len(groups)} keys for {size} rows")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._groups = None if groups is None else GroupRows(groups)

    @property
    def epoch_size(self) -> int:
        """Rows per epoch over all ranks: every row, or one per group."""
        return self.size if self._groups is None else self._groups.count

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self.epoch = epoch

    def epoch_rows(self) -> np.ndarray:
        """This epoch's rows before shuffling: all of them, or one per group."""
        if self._groups is None:
            return np.arange(self.size)
        return self._groups.pick(np.random.default_rng([self.seed, self.epoch, PICK_STREAM]))

    def _rank_rows(self) -> np.ndarray:
        rows = self.epoch_rows()
        if self.shuffle:
            rows = rows[np.random.default_rng([self.seed, self.epoch]).permutation(len(rows))]
        per_rank = len(rows) // self.world_size
        return rows[: per_rank * self.world_size][self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        rows = self._rank_rows()
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()

    def __len__(self) -> int:
        count = self.epoch_size // self.world_size
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)


class GroupRows:
    """Rows grouped by key, for drawing one row per group (uniformly within it) at a time."""

    def __init__(self, keys: Sequence[str]) -> None:
        _, group, counts = np.unique(np.asarray(keys, dtype=str), return_inverse=True,
                                     return_counts=True)
        self._rows = np.argsort(group, kind="stable")  # rows grouped, in row order within each
        self._counts = counts
        self._starts = np.cumsum(counts) - counts

    @property
    def count(self) -> int:
        """Number of groups."""
        return len(self._counts)

    def pick(self, rng: np.random.Generator) -> np.ndarray:
        """One row of every group, in sorted key order."""
        return self._rows[self._starts + rng.integers(self._counts)]
