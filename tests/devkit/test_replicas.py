"""devkit.replicas writes folders the real Shoes and CIRR adapters read, with provided extras."""

from __future__ import annotations

from devkit.replicas import write_cirr, write_shoes
from pipeline.core.params import PrepareParams
from pipeline.datasets import cirr, shoes


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
