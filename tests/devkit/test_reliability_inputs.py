"""inputs: resumes from finished shards; a skipped image takes its gallery row and queries along."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from PIL import Image

from devkit import faults
from pipeline.core.report import BadRecordError
from pipeline.core.shards import GALLERY, read_table
from trainer.data.dataset import TripletDataset
from trainer.data.tables import ImageStore, load_queries


@pytest.fixture
def scratch(tmp_path):
    faults.write_base_dataset(tmp_path / "base")
    with faults.registered_adapter():
        yield faults.Scratch(tmp_path / "base", tmp_path / "scratch")


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*-of-*.parquet")}


def test_rerun_reuses_shards_and_rebuilds_only_a_changed_image(scratch):
    params = scratch.params("fail")
    scratch.run_stages(params)
    out = scratch.out("run", "inputs")
    first = _mtimes(out)
    before = faults.file_hashes(out)
    scratch.run_stages(params, stages=("inputs",))
    assert _mtimes(out) == first  # nothing rebuilt
    assert faults.file_hashes(out) == before
    # A replaced gallery file changes only the image shard that holds it.
    victim = "val-03"
    path = scratch.image_file(victim)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(path)
    scratch.run_stages(params, stages=("inputs",))
    changed = sorted(n for n, t in _mtimes(out).items() if first[n] != t)
    holder = [
        n
        for n in first
        if n.startswith("images-")
        and victim in pq.read_table(out / n, columns=["image_id"])["image_id"].to_pylist()
    ]
    assert changed == holder


def test_unreadable_target_fails_naming_the_file(scratch):
    victim = faults.victim(scratch)
    path = scratch.image_file(victim)
    params = scratch.params("fail")
    scratch.run_stages(params, stages=faults.PRE_TRAIN[:-1])
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(BadRecordError, match=f"image {victim}.*{path.name}.*on_bad_record: skip"):
        scratch.run_stages(params, stages=("inputs",))


def test_skipped_image_leaves_gallery_and_its_queries(scratch):
    victim = faults.victim(scratch)
    params = scratch.params("skip")
    scratch.run_stages(params, stages=faults.PRE_TRAIN[:-1])
    path = scratch.image_file(victim)
    path.write_bytes(path.read_bytes()[:40])  # broken after render: only inputs meets it
    report = scratch.run_stages(params, stages=("inputs",))["inputs"]
    aimed = [t for t in scratch.dataset()["triplets"] if t["target_id"] == victim]
    assert aimed
    records = [s["record"] for s in report["skipped"]]
    assert f"image {victim}" in records
    assert {f"triplet {t['split']}/{t['pair_id']}" for t in aimed} <= set(records)
    out = scratch.out("run", "inputs")
    assert victim not in read_table(out / "gallery.parquet", GALLERY)["image_id"].to_pylist()
    queries = load_queries(out, "train")
    assert victim not in queries.target_ids
    TripletDataset(queries, ImageStore(out, queries.target_ids))  # every target has pixels
