"""Parquet schemas of every table the pipeline writes, and the sharded writer/reader.

Tables (one folder per stage under artifacts/):

- prepare/triplets.parquet  TRIPLETS: one row per (split, pair_id) query triplet.
- prepare/images.parquet    IMAGES: every image the dataset refers to, with its file path.
- prepare/gallery.parquet   GALLERY: which images form each split's retrieval gallery.
- caption/captions.parquet  CAPTIONS: one caption per reference image.
- keywords/keywords.parquet KEYWORDS: target keywords per (split, pair_id).
- render/queries-*.parquet  RENDERED: the unified queries (text string + keyword-on-image PNG).
- inputs/queries-*.parquet, inputs/images-*.parquet: encoder inputs (see trainer/data/).

Shards are named NAME-00000-of-00004.parquet and written atomically, so a rerun can reuse every
shard that is complete and a reader can check that the set is whole. Naming and the whole-set
check live in trainer/util/shards.py, since the trainer reads the inputs shards with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trainer.util.atomic import atomic_path, write_with
from trainer.util.shards import ShardError, list_shards, parse_shard_name

TRIPLETS = pa.schema(
    [
        ("split", pa.string()),
        ("pair_id", pa.string()),
        ("reference_id", pa.string()),
        ("target_id", pa.string()),
        ("modification", pa.string()),
        ("caption", pa.string()),  # a caption the dataset provides for the reference, or null
        ("keywords", pa.list_(pa.string())),  # keywords the dataset provides, or null
        ("subset", pa.list_(pa.string())),  # CIRR img_set members, or null
    ]
)
IMAGES = pa.schema([("image_id", pa.string()), ("path", pa.string())])
GALLERY = pa.schema([("split", pa.string()), ("image_id", pa.string())])
CAPTIONS = pa.schema([("image_id", pa.string()), ("caption", pa.string())])
KEYWORDS = pa.schema(
    [("split", pa.string()), ("pair_id", pa.string()), ("keywords", pa.list_(pa.string()))]
)
RENDERED = pa.schema(
    [
        ("split", pa.string()),
        ("pair_id", pa.string()),
        ("reference_id", pa.string()),
        ("target_id", pa.string()),
        ("text_query", pa.string()),
        ("keywords", pa.list_(pa.string())),
        ("visual_query", pa.binary()),  # PNG bytes of the reference with the keywords drawn on it
    ]
)
INPUT_QUERIES = pa.schema(
    [
        ("split", pa.string()),
        ("pair_id", pa.string()),
        ("reference_id", pa.string()),
        ("target_id", pa.string()),
        ("text_tokens", pa.list_(pa.int32())),
        ("modification_tokens", pa.list_(pa.int32())),  # the raw modification text's tokens
        ("visual_pixels", pa.binary()),  # S*S*3 uint8, HWC, at the model's input size
    ]
)
INPUT_IMAGES = pa.schema([("image_id", pa.string()), ("pixels", pa.binary())])
# With train.augment: official, also the training canvas (R*R*3 uint8 HWC, R = meta.json
# train_size) that trainer.data.augment crops per batch; the names are trainer.data.tables'
# *_CANVAS_COLUMN.
INPUT_QUERIES_CANVAS = INPUT_QUERIES.append(pa.field("visual_canvas", pa.binary()))
INPUT_IMAGES_CANVAS = INPUT_IMAGES.append(pa.field("canvas", pa.binary()))

def shard_ranges(n_rows: int, n_shards: int) -> list[tuple[int, int]]:
    """Split range(n_rows) into n_shards contiguous (start, stop) pairs of near-equal size."""
    n_shards = max(1, n_shards)
    bounds = [round(i * n_rows / n_shards) for i in range(n_shards + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


# Fixed writer options so equal tables give equal bytes (DVC hashes must not drift).
WRITER_OPTIONS = {"compression": "zstd", "write_statistics": False}
ROWS_PER_GROUP = 256  # rows per row group of the streamed shards (a few MB of PNG or pixels)


@contextmanager
def shard_writer(path: str | Path, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A Parquet writer on a temp file, renamed to `path` when the block ends without error.

    Each `write_table` call adds row groups, so a shard of pixels never sits in memory whole;
    what is known only at the end (a stage report) goes in with `add_key_value_metadata`.
    """
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, **WRITER_OPTIONS) as out:
        yield out


def write_table(table: pa.Table, path: str | Path, schema: pa.Schema | None = None) -> None:
    """Write one Parquet file atomically (checked against `schema` when given)."""
    if schema is not None:
        table = conform(table, schema, str(path))
    write_with(path, lambda tmp: pq.write_table(table, tmp, row_group_size=1024,
                                                **WRITER_OPTIONS))


def conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """Return `table` with exactly `schema`'s columns and types, or raise naming what differs."""
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise ShardError(f"{where}: missing column(s) {missing}; expected {schema.names}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ShardError(f"{where}: columns do not match the expected schema: {err}") from err


def read_table(path: str | Path, schema: pa.Schema | None = None) -> pa.Table:
    """Read one Parquet file, checked against `schema` when given."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: not found; run the stage that writes it (dvc repro)")
    table = pq.read_table(path)
    return conform(table, schema, str(path)) if schema is not None else table


def read_shards(folder: str | Path, stem: str, schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate a complete shard set in shard order."""
    tables = [read_table(p, schema) for p in list_shards(folder, stem)]
    return pa.concat_tables(tables)


def remove_stale(folder: str | Path, stem: str, count: int) -> None:
    """Delete STEM shards of another shard count and leftover temp files."""
    folder = Path(folder)
    for path in folder.glob(f"{stem}-*-of-*.parquet"):
        parsed = parse_shard_name(path.name)
        if parsed is not None and parsed[0] == stem and parsed[2] != count:
            path.unlink()
    for tmp in folder.glob(f".{stem}-*.tmp"):
        tmp.unlink()
