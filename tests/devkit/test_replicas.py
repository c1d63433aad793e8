"""devkit.replicas writes folders the real Shoes, CIRR and Fashion200K adapters read, with
provided extras."""

from __future__ import annotations

from collections import Counter

import pytest

from devkit.replicas import write_cirr, write_fashion200k, write_shoes
from pipeline.core.params import PrepareParams
from pipeline.datasets import cirr, fashion200k, shoes


def test_shoes_replica_reads_through_the_adapter(tmp_path) -> None:
    counts = write_shoes(tmp_path, scale=0.003)
    tables = shoes.build(PrepareParams(dataset="shoes", root=str(tmp_path)), 0, tmp_path / "o")
    assert tables.triplets.num_rows == counts["triplets"] == round(10_751 * 0.003)
    assert tables.gallery.num_rows == round(4_658 * 0.003)
    rows = tables.triplets.to_pylist()
    assert {r["split"] for r in rows} == {"train", "val"}
    assert all(r["caption"] and r["keywords"] for r in rows)  # provided backends need no model


def test_cirr_replica_reads_through_the_adapter(tmp_path) -> None:
    counts = write_cirr(tmp_path, scale=0.003)
    tables = cirr.build(PrepareParams(dataset="cirr", root=str(tmp_path)), 0, tmp_path / "o")
    assert tables.triplets.num_rows == counts["triplets"]
    assert tables.images.num_rows == counts["images"]
    rows = tables.triplets.to_pylist()
    assert all(len(r["subset"]) == 6 and r["keywords"] for r in rows)
    assert all(r["target_id"] is None for r in rows if r["split"] == "test1")


def test_textured_replica_images_do_not_compress_away(tmp_path) -> None:
    from PIL import Image

    from devkit.replicas import ImageStyle

    write_shoes(tmp_path / "solid", scale=0.001)
    write_shoes(tmp_path / "photo", scale=0.001, style=ImageStyle(textured=True, side=128))
    solid = sorted((tmp_path / "solid").rglob("*.jpg"))
    photo = sorted((tmp_path / "photo").rglob("*.jpg"))
    assert len(solid) == len(photo) > 0
    with Image.open(photo[0]) as image:
        assert image.size == (128, 128) and image.mode == "RGB"
    # a JPEG of grain keeps a good share of its 48 KiB of pixels; a solid one is a few hundred
    # bytes
    assert min(p.stat().st_size for p in photo) > 8 * max(p.stat().st_size for p in solid)
    assert min(p.stat().st_size for p in photo) > 128 * 128 * 3 // 8


def test_fashion200k_replica_reads_through_the_adapter_with_full_pools(tmp_path) -> None:
    counts = write_fashion200k(tmp_path, scale=0.01)
    params = PrepareParams(dataset="fashion200k", root=str(tmp_path), train_pairs_per_image=8)
    tables = fashion200k.build(params, 0, tmp_path / "o")
    rows = tables.triplets.to_pylist()
    test = [r for r in rows if r["split"] == "test"]
    assert len(test) == counts["triplets"] == round(33_480 * 0.01)
    assert counts["train_images"] == round(172_049 * 0.01)
    train = [r for r in rows if r["split"] == "train"]
    # every source has parents with siblings, so prepare draws a pool for each: up to the
    # official 8 (nearly always 8; at this tiny scale a few siblings hold fewer images)
    pools = Counter(r["reference_id"] for r in train)
    assert len(pools) == counts["train_images"] and max(pools.values()) == 8
    assert len(train) > 7 * counts["train_images"]
    assert all(r["modification"].startswith("replace ") and r["keywords"] for r in rows)


def test_a_fashion200k_replica_too_small_for_its_queries_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="too few test images"):
        write_fashion200k(tmp_path, scale=0.0002)
