"""Shard naming and the whole-set check shared by the pipeline's writers and the trainer."""

from pathlib import Path

import pytest

from trainer.util.shards import ShardError, list_shards, parse_shard_name, shard_name


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_names_round_trip() -> None:
    assert shard_name("queries", 3, 12) == "queries-00003-of-00012.parquet"
    assert parse_shard_name("my-queries-00003-of-00012.parquet") == ("my-queries", 3, 12)
    assert parse_shard_name("queries-3-of-12.parquet") is None


def test_complete_set_is_listed_in_order_and_other_stems_ignored(tmp_path: Path) -> None:
    _touch(tmp_path, *(shard_name("images", i, 3) for i in (2, 0, 1)),
           shard_name("images-extra", 0, 1))
    assert [p.name for p in list_shards(tmp_path, "images")] == [
        shard_name("images", i, 3) for i in range(3)]


@pytest.mark.parametrize(("names", "message"), [
    ((), "no 'kw' shards"),
    ((shard_name("kw", 0, 3), shard_name("kw", 2, 3)), r"incomplete .*shard\(s\) \[1\] of 3"),
    ((shard_name("kw", 0, 2), shard_name("kw", 0, 3)), "different runs"),
])
def test_broken_sets_are_refused(tmp_path: Path, names: tuple[str, ...], message: str) -> None:
    _touch(tmp_path, *names)
    with pytest.raises(ShardError, match=message):
        list_shards(tmp_path, "kw")
