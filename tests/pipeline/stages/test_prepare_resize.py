"""prepare.resize on a tiny FashionIQ replica: stretched copies, as DQU-CIR's resized_image/."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.core.params import ParallelParams, Params, PrepareParams
from pipeline.core.report import BadRecordError
from pipeline.core.shards import IMAGES, read_table
from pipeline.stages import prepare
from tests.factories import write_json
from trainer.checks import RangeError


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "fashionIQ"
    write_json(root / "captions" / "cap.dress.train.json",
               [{"candidate": "A", "target": "B", "captions": ["is blue", "longer"]}])
    write_json(root / "captions" / "cap.dress.val.json",
               [{"candidate": "C", "target": "D", "captions": ["is red", "has sleeves"]}])
    write_json(root / "image_splits" / "split.dress.val.json", ["C", "D"])
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for k, name in enumerate("ABCD"):
        # Non-square originals of different shapes: the copies must all be stretched.
        pixels = rng.integers(0, 256, (20 + 3 * k, 30 - 2 * k, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{name}.png")
    return root


def _params(root: Path, resize: int | None, **kw) -> Params:
    return Params(parallel=ParallelParams(scheduler="sync"),
                  prepare=PrepareParams(dataset="fashioniq", root=str(root), category="dress",
                                        protocol="val-split", resize=resize, **kw))


def test_resize_writes_stretched_copies_and_points_images_at_them(root, tmp_path):
    out = tmp_path / "prepare"
    prepare.run(_params(root, 16), out)
    images = read_table(out / "images.parquet", IMAGES).to_pylist()
    assert sorted(r["image_id"] for r in images) == list("ABCD")
    for row in images:
        path = Path(row["path"])
        assert path.parent == out / "images"
        source = Image.open(root / "images" / f"{row['image_id']}.png").convert("RGB")
        expected = source.resize((16, 16), Image.Resampling.LANCZOS)
        with Image.open(path) as copy:
            assert copy.size == (16, 16)
            assert np.array_equal(np.asarray(copy.convert("RGB")), np.asarray(expected))


def test_no_resize_keeps_the_dataset_files(root, tmp_path):
    out = tmp_path / "prepare"
    prepare.run(_params(root, None), out)
    paths = read_table(out / "images.parquet", IMAGES)["path"].to_pylist()
    assert all(Path(p).parent == root / "images" for p in paths)
    assert not (out / "images").exists()


def test_jpeg_sources_stay_jpeg(root, tmp_path):
    for name in "ABCD":
        png = root / "images" / f"{name}.png"
        Image.open(png).convert("RGB").save(root / "images" / f"{name}.jpg")
        png.unlink()
    out = tmp_path / "prepare"
    prepare.run(_params(root, 20), out)
    for path in read_table(out / "images.parquet", IMAGES)["path"].to_pylist():
        with Image.open(path) as copy:
            assert (copy.format, copy.size) == ("JPEG", (20, 20))


def test_unreadable_image_fails_or_keeps_its_path_when_skipping(root, tmp_path):
    (root / "images" / "D.png").write_bytes(b"not an image")
    with pytest.raises(BadRecordError, match="prepare.resize"):
        prepare.run(_params(root, 16), tmp_path / "fail")
    out = tmp_path / "skip"
    prepare.run(_params(root, 16, on_bad_record="skip"), out)
    table = read_table(out / "images.parquet", IMAGES)
    paths = dict(zip(table["image_id"].to_pylist(), table["path"].to_pylist(), strict=True))
    assert paths["D"] == str(root / "images" / "D.png")
    assert Path(paths["A"]).parent == out / "images"


def test_images_already_that_size_are_used_as_they_are(root, tmp_path):
    # resized_image/ (already 256x256 JPEGs): no second JPEG generation.
    Image.new("RGB", (16, 16), (9, 8, 7)).save(root / "images" / "B.png")
    out = tmp_path / "prepare"
    prepare.run(_params(root, 16), out)
    table = read_table(out / "images.parquet", IMAGES)
    paths = dict(zip(table["image_id"].to_pylist(), table["path"].to_pylist(), strict=True))
    assert paths["B"] == str(root / "images" / "B.png")
    assert Path(paths["A"]).parent == out / "images"


def test_resize_must_leave_room_for_a_keyword_line(root):
    for side in (0, 8):
        with pytest.raises(RangeError, match="16 <= resize <= 8192"):
            _params(root, side)
