"""Shard file naming (STEM-00000-of-00004.parquet) and the whole-set check readers rely on."""

from __future__ import annotations

import re
from pathlib import Path

_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")


class ShardError(ValueError):
    """A shard set on disk is incomplete or does not match its schema."""


def shard_name(stem: str, index: int, count: int) -> str:
    """File name of shard `index` of `count`: STEM-00000-of-00004.parquet."""
    return f"{stem}-{index:05d}-of-{count:05d}.parquet"


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """(stem, index, count) of a shard file name, or None when `name` is not one."""
    match = _SHARD_RE.match(name)
    if match is None:
        return None
    return match["stem"], int(match["index"]), int(match["count"])


def list_shards(folder: str | Path, stem: str) -> list[Path]:
    """The complete, ordered shard set STEM-*-of-N in `folder`; raise if any shard is missing."""
    folder = Path(folder)
    found: dict[int, Path] = {}
    counts = set()
    for path in folder.glob(f"{stem}-*-of-*.parquet"):
        parsed = parse_shard_name(path.name)
        # The glob also matches longer stems (queries-x-...), which belong to another set.
        if parsed is not None and parsed[0] == stem:
            found[parsed[1]] = path
            counts.add(parsed[2])
    if not found:
        raise ShardError(f"{folder}: no '{stem}' shards; run the stage that writes them")
    if len(counts) != 1:
        raise ShardError(f"{folder}: '{stem}' shards from different runs (of-N: {sorted(counts)}); "
                         "rerun the stage that writes them")
    count = counts.pop()
    missing = [i for i in range(count) if i not in found]
    if missing:
        raise ShardError(f"{folder}: incomplete '{stem}' shard set, shard(s) {missing} of {count} "
                         "missing; rerun the stage that writes them")
    return [found[i] for i in range(count)]
