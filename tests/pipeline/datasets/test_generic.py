"""Generic JSONL / CSV adapter for a user's own catalogue."""

import json
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.params import Params, PrepareParams
from pipeline.core.report import BadRecordError
from pipeline.core.shards import read_table
from pipeline.datasets import build_tables
from pipeline.datasets.official import AnnotationError
from pipeline.stages import prepare
from tests.factories import REPO


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "mine"
    (folder / "catalogue" / "shoes").mkdir(parents=True)
    for name in ("shoes/s1.png", "shoes/s2.png", "shoes/s3.png"):
        Image.new("RGB", (8, 8)).save(folder / "catalogue" / name)
    (folder / "queries").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "queries" / "photo.jpg")
    return folder


def _jsonl(folder: Path, records: list[dict]) -> Path:
    path = folder / "triplets.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_jsonl_paths_gallery_ids_and_optional_fields(folder, tmp_path):
    _jsonl(folder, [
        {"reference": "queries/photo.jpg", "modification": "in red", "target": "shoes/s2",
         "keywords": ["red"], "caption": "a shoe"},
        {"reference": "catalogue/shoes/s1.png", "modification": "taller", "target": "shoes/s3.png",
         "split": "train", "pair_id": 0},
    ])
    params = PrepareParams(dataset="generic", root=str(folder), gallery="catalogue")
    tables = build_tables(params, 0, tmp_path)
    rows = tables.triplets.to_pylist()
    assert rows[0]["split"] == "test" and rows[0]["pair_id"] == "1"
    assert rows[0]["target_id"] == "shoes/s2.png" and rows[0]["keywords"] == ["red"]
    assert rows[1]["pair_id"] == "0" and rows[1]["keywords"] is None
    assert tables.gallery.to_pylist() == [
        {"split": "test", "image_id": f"shoes/s{i}.png"} for i in (1, 2, 3)
    ]
    paths = {r["image_id"]: r["path"] for r in tables.images.to_pylist()}
    assert Path(paths["queries/photo.jpg"]) == folder / "queries" / "photo.jpg"
    assert Path(paths["shoes/s2.png"]) == folder / "catalogue" / "shoes" / "s2.png"


def test_csv_without_gallery_uses_the_union_of_the_split(folder, tmp_path):
    path = folder / "mine.csv"
    path.write_text("reference,modification,target,keywords\n"
                    "queries/photo.jpg,in red,catalogue/shoes/s2.png,\"red, glossy\"\n"
                    "catalogue/shoes/s1.png,taller,catalogue/shoes/s2.png,\n")
    out = tmp_path / "prep"
    prepare.run(Params(prepare=PrepareParams(dataset="generic", root=str(path))), out)
    rows = read_table(out / "triplets.parquet").to_pylist()
    assert rows[0]["keywords"] == ["red", "glossy"] and rows[1]["keywords"] is None
    assert read_table(out / "gallery.parquet")["image_id"].to_pylist() == [
        "queries/photo.jpg", "catalogue/shoes/s2.png", "catalogue/shoes/s1.png"]


def test_malformed_records_are_listed(folder, tmp_path):
    path = folder / "triplets.jsonl"
    path.write_text('{"reference": "a.png", "target": "b.png"}\nnot json\n[1]\n')
    with pytest.raises(AnnotationError, match=r"line 2 \(not JSON\), line 3 \(not an object\), "
                                              r"record 1 \(missing \['modification'\]\)"):
        build_tables(PrepareParams(dataset="generic", root=str(folder)), 0, tmp_path)


def test_missing_image_and_empty_root(folder, tmp_path):
    _jsonl(folder, [{"reference": "queries/photo.jpg", "modification": "red",
                     "target": "nowhere.png"}])
    with pytest.raises(BadRecordError, match="nowhere.png"):
        prepare.run(Params(prepare=PrepareParams(dataset="generic", root=str(folder))),
                    tmp_path / "o")
    with pytest.raises(AnnotationError, match="no triplets.jsonl or triplets.csv"):
        build_tables(PrepareParams(dataset="generic", root=str(tmp_path)), 0, tmp_path)


def test_dqu_prepare_overrides_dataset_and_root(folder, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    _jsonl(folder, [{"reference": "queries/photo.jpg", "modification": "red",
                     "target": "catalogue/shoes/s1.png"}])
    repo_params = REPO / "params.yaml"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["prepare", "--params", str(repo_params), "--out", str(out),
                                      "--dataset", "generic", "--root", str(folder)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text()) == {
        "test": {"triplets": 1, "queries": 1, "gallery_images": 2}}
