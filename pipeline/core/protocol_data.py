"""Per-query data that scoring needs and the input shards lack, read from the prepare folder.

CIRR's subset members (`img_set.members`, for Rsubset@K and the test1 submission) come from
prepare/triplets.parquet; Fashion200K's per-image captions (the caption-equality hit rule) from
prepare/image_captions.parquet, which the adapters whose protocol needs it write.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.shards import CAPTIONS, TRIPLETS, read_table

IMAGE_CAPTIONS = "image_captions.parquet"


def subset_members(prepare_dir: Path, split: str) -> dict[str, list[str]]:
    """Pair id -> CIRR subset members of one split's queries (those that have members)."""
    table = read_table(Path(prepare_dir) / "triplets.parquet", TRIPLETS)
    return {pair: subset for name, pair, subset in zip(
        table["split"].to_pylist(), table["pair_id"].to_pylist(), table["subset"].to_pylist(),
        strict=True) if name == split and subset is not None}


def image_captions(prepare_dir: Path) -> dict[str, str]:
    """Image id -> caption, from the prepare folder (adapters with a caption hit rule)."""
    table = read_table(Path(prepare_dir) / IMAGE_CAPTIONS, CAPTIONS)
    return dict(zip(table["image_id"].to_pylist(), table["caption"].to_pylist(), strict=True))
