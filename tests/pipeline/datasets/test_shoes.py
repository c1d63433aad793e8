"""Shoes adapter on a tiny replica of the official layout."""

import json
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.params import Params, PrepareParams
from pipeline.core.report import BadRecordError
from pipeline.datasets import build_tables
from pipeline.datasets.official import AnnotationError
from pipeline.stages import prepare


def _triplet(ref: str, target: str, text: str) -> dict:
    return {"ImageName": target, "ReferenceImageName": ref, "RelativeCaption": text}


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "shoes"
    for folder, names in (("womens_athletic_shoes/1", ["a.jpg", "b.jpg"]),
                          ("womens_boots/0", ["c.jpg", "d.jpg", "e.jpg"])):
        (root / folder).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (8, 8)).save(root / folder / name)
    (root / "train_im_names.txt").write_text("a.jpg\nb.jpg\n")
    (root / "eval_im_names.txt").write_text("c.jpg\nd.jpg\ne.jpg\n")
    (root / "relative_captions_shoes.json").write_text(json.dumps([
        _triplet("a.jpg", "b.jpg", "is Blacker. "),
        _triplet("c.jpg", "d.jpg", "has a higer heel"),
        _triplet("x.jpg", "d.jpg", "reference in neither list"),
    ]))
    (root / "correction_dict_shoes.json").write_text(json.dumps({"higer": "higher"}))
    (root / "image_captions_shoes.json").write_text(json.dumps({"c.jpg": "a brown boot"}))
    (root / "keywords_in_mods_shoes.json").write_text(
        json.dumps({"c.jpg+d.jpg": ["has a higher heel", "higher heel"]}))
    return root


def _params(root: Path, **kw) -> PrepareParams:
    return PrepareParams(dataset="shoes", root=str(root), **kw)


def test_splits_text_extras_and_eval_gallery(root, tmp_path):
    tables = build_tables(_params(root), 0, tmp_path)
    rows = {r["pair_id"]: r for r in tables.triplets.to_pylist()}
    assert set(rows) == {"a.jpg+b.jpg", "c.jpg+d.jpg"}  # x.jpg is in neither image list
    assert rows["a.jpg+b.jpg"]["split"] == "train"
    assert rows["a.jpg+b.jpg"]["modification"] == "is blacker"
    query = rows["c.jpg+d.jpg"]
    assert query["split"] == "val" and query["modification"] == "has a higher heel"
    assert query["caption"] == "a brown boot" and query["keywords"] == ["higher heel"]
    assert tables.gallery["image_id"].to_pylist() == ["c.jpg", "d.jpg", "e.jpg"]
    paths = {r["image_id"]: r["path"] for r in tables.images.to_pylist()}
    assert Path(paths["e.jpg"]) == root / "womens_boots" / "0" / "e.jpg"


def test_duplicate_pairs_fail_or_are_counted(root, tmp_path):
    data = json.loads((root / "relative_captions_shoes.json").read_text())
    data.append(_triplet("c.jpg", "d.jpg", "again"))
    (root / "relative_captions_shoes.json").write_text(json.dumps(data))
    with pytest.raises(BadRecordError, match=r"val/c\.jpg\+d\.jpg: duplicate pair id"):
        prepare.run(Params(prepare=_params(root)), tmp_path / "a")
    report = prepare.run(Params(prepare=_params(root, on_bad_record="skip")), tmp_path / "b")
    assert (report.n_in, report.n_out, report.n_skipped) == (3, 1, 2)


def test_missing_eval_images_are_listed(root, tmp_path):
    (root / "womens_boots" / "0" / "e.jpg").unlink()
    (root / "eval_im_names.txt").write_text("c.jpg\nd.jpg\ne.jpg\nf.jpg\n")
    with pytest.raises(AnnotationError, match=r"no file under womens_\*: e\.jpg, f\.jpg"):
        build_tables(_params(root), 0, tmp_path)


def test_repeated_image_names_are_an_error(root, tmp_path):
    Image.new("RGB", (8, 8)).save(root / "womens_athletic_shoes" / "1" / "c.jpg")
    with pytest.raises(AnnotationError, match="found twice"):
        build_tables(_params(root), 0, tmp_path)


def test_malformed_annotation_file(root, tmp_path):
    (root / "relative_captions_shoes.json").write_text("[{\"ImageName\": ")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        build_tables(_params(root), 0, tmp_path)
