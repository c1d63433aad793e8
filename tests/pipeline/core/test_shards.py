"""Sharded Parquet: naming, round trip, completeness checks, byte-stable writes."""

import pyarrow as pa
import pytest

from pipeline.core.shards import (
    KEYWORDS,
    read_shards,
    remove_stale,
    shard_ranges,
    write_table,
)
from trainer.util.shards import ShardError, list_shards, shard_name


def _table(n: int, offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "split": ["test"] * n,
            "pair_id": [f"p{offset + i:03d}" for i in range(n)],
            "keywords": [[f"kw{i}", "blue"] for i in range(n)],
        },
        schema=KEYWORDS,
    )


def test_shard_ranges_cover_everything_once():
    for n, k in [(10, 3), (0, 2), (5, 5), (3, 4)]:
        ranges = shard_ranges(n, k)
        assert len(ranges) == k
        assert [i for a, b in ranges for i in range(a, b)] == list(range(n))


def test_round_trip_in_shard_order(tmp_path):
    for i in range(3):
        write_table(_table(4, offset=4 * i), tmp_path / shard_name("kw", i, 3), KEYWORDS)
    table = read_shards(tmp_path, "kw", KEYWORDS)
    assert table.num_rows == 12
    assert table["pair_id"].to_pylist() == [f"p{i:03d}" for i in range(12)]
    assert table["keywords"].to_pylist()[5] == ["kw1", "blue"]


def test_missing_shard_is_reported(tmp_path):
    write_table(_table(2), tmp_path / shard_name("kw", 0, 3))
    write_table(_table(2), tmp_path / shard_name("kw", 2, 3))
    with pytest.raises(ShardError, match=r"shard\(s\) \[1\] of 3 missing"):
        list_shards(tmp_path, "kw")


def test_mixed_runs_are_reported_and_stale_removed(tmp_path):
    write_table(_table(2), tmp_path / shard_name("kw", 0, 2))
    write_table(_table(2), tmp_path / shard_name("kw", 0, 3))
    with pytest.raises(ShardError, match="different runs"):
        list_shards(tmp_path, "kw")
    remove_stale(tmp_path, "kw", 2)
    with pytest.raises(ShardError, match="missing"):
        list_shards(tmp_path, "kw")


def test_schema_mismatch_is_named(tmp_path):
    with pytest.raises(ShardError, match="missing column"):
        write_table(pa.table({"split": ["a"]}), tmp_path / "x.parquet", KEYWORDS)


def test_equal_tables_give_equal_bytes(tmp_path):
    write_table(_table(50), tmp_path / "a.parquet", KEYWORDS)
    write_table(_table(50), tmp_path / "b.parquet", KEYWORDS)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert not list(tmp_path.glob("*.tmp"))
