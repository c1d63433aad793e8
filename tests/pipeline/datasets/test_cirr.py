"""CIRR adapter on a tiny replica of the official rc2 layout."""

import json
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.params import Params, PrepareParams
from pipeline.core.shards import read_table
from pipeline.datasets import build_tables
from pipeline.datasets.official import AnnotationError
from pipeline.stages import prepare
from tests.factories import write_json

IMAGES = {
    "train": ["train-1-0-img0", "train-1-0-img1"],
    "val": ["dev-0-0-img0", "dev-0-0-img1", "dev-0-1-img0", "dev-0-1-img1"],
    "test1": ["test1-0-0-img0", "test1-0-0-img1", "test1-0-1-img0"],
}
FOLDER = {"train": "train/1", "val": "dev", "test1": "test1"}


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "cirr"
    for split, names in IMAGES.items():
        splits = {}
        for name in names:
            rel = f"./{FOLDER[split]}/{name}.png"
            (root / "img_raw" / FOLDER[split]).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(root / "img_raw" / rel)
            splits[name] = rel
        write_json(root / "image_splits" / f"split.rc2.{split}.json", splits)
    train, val, test = IMAGES["train"], IMAGES["val"], IMAGES["test1"]
    write_json(root / "captions" / "cap.rc2.train.json", [
        {"pairid": 7, "reference": train[0], "target_hard": train[1], "target_soft": {},
         "caption": "add a dog", "img_set": {"id": 1, "members": train}},
    ])
    write_json(root / "captions" / "cap.rc2.val.json", [
        {"pairid": 12, "reference": val[0], "target_hard": val[1], "target_soft": {val[1]: 1.0},
         "caption": "make it night", "img_set": {"id": 0, "members": val[:3]}},
    ])
    write_json(root / "captions" / "cap.rc2.test1.json", [
        {"pairid": 3, "reference": test[0], "caption": "zoom out",
         "img_set": {"id": 0, "members": test}},
    ])
    write_json(root / "image_captions_cirr_val.json", {val[0]: "a city street"})
    write_json(root / "keywords_in_mods_cirr_val.json",
               {f"{val[0]}+{val[1]}": ["make it night", "night, dark sky"]})
    write_json(root / "keywords_in_mods_cirr_test1.json",
               {f"3+{test[0]}": ["zoom out", "wide view"]})
    return root


def test_three_splits_with_subsets_and_hidden_test_targets(root, tmp_path):
    out = tmp_path / "prep"
    prepare.run(Params(prepare=PrepareParams(dataset="cirr", root=str(root))), out)
    rows = {(r["split"], r["pair_id"]): r for r in read_table(out / "triplets.parquet").to_pylist()}
    val = rows[("val", "12")]
    assert val["subset"] == IMAGES["val"][:3] and val["caption"] == "a city street"
    assert val["keywords"] == ["night", "dark sky"] and val["modification"] == "make it night"
    test = rows[("test1", "3")]
    assert test["target_id"] is None and test["keywords"] == ["wide view"]
    gallery = read_table(out / "gallery.parquet").to_pylist()
    assert [g["image_id"] for g in gallery if g["split"] == "val"] == IMAGES["val"]
    assert [g["image_id"] for g in gallery if g["split"] == "test1"] == IMAGES["test1"]
    assert not [g for g in gallery if g["split"] == "train"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val"]["gallery_images"] == 4 and summary["test1"]["queries"] == 1
    images = read_table(out / "images.parquet").to_pylist()
    assert all(Path(i["path"]).is_file() for i in images)


def test_subset_member_outside_the_split_is_listed(root, tmp_path):
    data = json.loads((root / "captions" / "cap.rc2.val.json").read_text())
    data[0]["img_set"]["members"].append("dev-9-9-img9")
    write_json(root / "captions" / "cap.rc2.val.json", data)
    with pytest.raises(AnnotationError, match=r"pairid 12 \(dev-9-9-img9\)"):
        build_tables(PrepareParams(dataset="cirr", root=str(root)), 0, tmp_path)


def test_missing_target_field_is_malformed(root, tmp_path):
    data = json.loads((root / "captions" / "cap.rc2.val.json").read_text())
    del data[0]["target_hard"]
    write_json(root / "captions" / "cap.rc2.val.json", data)
    with pytest.raises(AnnotationError, match=r"cap\.rc2\.val\.json.*target_hard.*#0"):
        build_tables(PrepareParams(dataset="cirr", root=str(root)), 0, tmp_path)
