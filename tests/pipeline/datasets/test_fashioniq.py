"""FashionIQ adapter on a tiny replica of the official layout: text, galleries, errors."""

import json
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.params import Params, PrepareParams
from pipeline.core.report import BadRecordError
from pipeline.core.shards import read_table
from pipeline.datasets import build_tables
from pipeline.datasets.official import AnnotationError
from pipeline.datasets.text_norm import join_captions, normalize_caption
from pipeline.stages import prepare
from tests.factories import write_json

VAL = [
    {"candidate": "C", "target": "D", "captions": ["Is Red!", "has sleves"]},
    {"candidate": "D", "target": "E", "captions": ["is shorter", "red/blue"]},
]


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "fashionIQ"
    write_json(root / "captions" / "cap.dress.train.json",
               [{"candidate": "A", "target": "B", "captions": ["is blue", "longer"]}])
    write_json(root / "captions" / "cap.dress.val.json", VAL)
    write_json(root / "image_splits" / "split.dress.val.json", ["C", "D", "E", "F", "G"])
    write_json(root / "captions" / "correction_dict_dress.json", {"sleves": "sleeves"})
    write_json(root / "captions" / "image_captions_dress_val.json", {"C": "a white dress"})
    write_json(root / "captions" / "keywords_in_mods_dress.json",
               {"C_D": ["is red", "has sleeves", "red, long sleeves"]})
    (root / "images").mkdir()
    for name in "ABCDEFG":
        Image.new("RGB", (8, 8)).save(root / "images" / f"{name}.png")
    return root


def _params(root: Path, protocol: str | None = "val-split", **kw) -> Params:
    # No trailing slash on purpose: the official script needs one, we must not.
    return Params(prepare=PrepareParams(dataset="fashioniq", root=str(root), category="dress",
                                        protocol=protocol, **kw))


def test_normalisation_matches_the_official_rule():
    fixes = {"sleves": "sleeves"}
    assert normalize_caption("  Is Red!  has SLEVES.", fixes) == "is red has sleeves"
    assert normalize_caption("red/blue-ish", {}) == "red blue ish"
    assert join_captions(["Is Red!", "has sleves"], fixes) == "is red and has sleeves"


def test_val_split_gallery_is_the_union_of_val_references_and_targets(root, tmp_path):
    tables = build_tables(_params(root).prepare, 0, tmp_path)
    val = [r for r in tables.triplets.to_pylist() if r["split"] == "val"]
    assert [r["pair_id"] for r in val] == ["C_D", "D_E"]
    assert val[0]["modification"] == "is red and has sleeves"
    assert val[1]["modification"] == "is shorter and red blue"
    assert val[0]["caption"] == "a white dress" and val[1]["caption"] is None
    assert val[0]["keywords"] == ["red", "long sleeves"] and val[1]["keywords"] is None
    assert tables.gallery["image_id"].to_pylist() == ["C", "D", "E"]
    paths = {r["image_id"]: r["path"] for r in tables.images.to_pylist()}
    assert Path(paths["C"]) == root / "images" / "C.png"


def test_original_split_gallery_is_every_val_split_image(root, tmp_path):
    out = tmp_path / "prep"
    prepare.run(_params(root, "original-split"), out)
    assert read_table(out / "gallery.parquet")["image_id"].to_pylist() == list("CDEFG")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val"] == {"triplets": 2, "queries": 2, "gallery_images": 5}
    assert summary["train"]["triplets"] == 1


def test_dqu_resized_image_layout_is_found(root, tmp_path):
    (root / "images" / "C.png").unlink()
    (root / "resized_image" / "dress").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "resized_image" / "dress" / "C.jpg")
    tables = build_tables(_params(root).prepare, 0, tmp_path)
    paths = {r["image_id"]: r["path"] for r in tables.images.to_pylist()}
    assert Path(paths["C"]) == root / "resized_image" / "dress" / "C.jpg"


def test_missing_image_names_the_triplet(root, tmp_path):
    (root / "images" / "E.png").unlink()
    with pytest.raises(BadRecordError, match=r"val/D_E.*'E'.*missing"):
        prepare.run(_params(root), tmp_path / "out")


def test_target_outside_the_original_split_gallery_fails(root, tmp_path):
    write_json(root / "image_splits" / "split.dress.val.json", ["C", "D"])
    with pytest.raises(BadRecordError, match=r"val/D_E.*not in the val gallery"):
        prepare.run(_params(root, "original-split"), tmp_path / "out")


def test_malformed_captions_list_every_offending_entry(root, tmp_path):
    write_json(root / "captions" / "cap.dress.val.json",
               [{"candidate": "C", "target": "D", "captions": ["one"]}, VAL[1], {"target": "E"}])
    with pytest.raises(AnnotationError, match=r"cap\.dress\.val\.json.*#2"):
        build_tables(_params(root).prepare, 0, tmp_path)
    write_json(root / "captions" / "cap.dress.val.json",
               [{"candidate": "C", "target": "D", "captions": ["one"]}, VAL[1]])
    with pytest.raises(AnnotationError, match=r"not two strings: #0 \(C->D\)"):
        build_tables(_params(root).prepare, 0, tmp_path)


def test_category_and_protocol_are_checked(root, tmp_path):
    with pytest.raises(AnnotationError, match="prepare.category"):
        build_tables(PrepareParams(dataset="fashioniq", root=str(root)), 0, tmp_path)
    # a value the adapter does not list is refused when params are built (PrepareParams)
    with pytest.raises(ValueError, match="prepare.protocol: 'test-split'"):
        build_tables(_params(root, "test-split").prepare, 0, tmp_path)


def test_user_dictionary_replaces_the_official_one(root, tmp_path):
    mine = tmp_path / "fix.json"
    mine.write_text(json.dumps({"shorter": "SHORTER"}))
    tables = build_tables(_params(root, correction_dict=str(mine)).prepare, 0, tmp_path)
    mods = tables.triplets["modification"].to_pylist()
    assert "is SHORTER and red blue" in mods and "is red and has sleves" in mods
