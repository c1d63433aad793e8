"""The render stage on tiny tables: contents, determinism across schedulers, bad records, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import pipeline.stages.render as render_module
from pipeline.core.images import decode_png
from pipeline.core.params import ParallelParams, Params, RenderParams
from pipeline.core.report import BadRecordError
from pipeline.core.shards import (
    CAPTIONS,
    IMAGES,
    KEYWORDS,
    RENDERED,
    TRIPLETS,
    read_shards,
    write_table,
)
from pipeline.stages.render import run
from trainer.util.shards import list_shards

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (90, 90, 90)]
# (split, pair_id, reference, target, modification); deliberately not in sorted order.
TRIPLETS_ROWS = [
    ("val", "v2", "img3", "img4", "is green"),
    ("train", "t3", "img0", "img2", "make it blue"),
    ("train", "t1", "img0", "img1", "is green and larger"),
    ("val", "v1", "img2", "img0", "has a red tint"),
    ("train", "t2", "img1", "img3", "is yellow"),
    ("train", "t5", "img4", "img0", "is red"),
    ("train", "t4", "img2", "img4", "grey, not blue"),
    ("val", "v3", "img4", "img1", "is green"),
]


def _layout(root: Path) -> dict[str, Path]:
    """Write 5 images and the four input tables under `root`; return the stage folders."""
    dirs = {name: root / name for name in ("prepare", "caption", "keywords", "images")}
    for folder in dirs.values():
        folder.mkdir(parents=True)
    image_rows = []
    for index, color in enumerate(COLORS):
        path = dirs["images"] / f"img{index}.png"
        Image.new("RGB", (48 + 8 * index, 40), color).save(path)
        image_rows.append({"image_id": f"img{index}", "path": str(path)})
    write_table(pa.Table.from_pylist(image_rows, IMAGES), dirs["prepare"] / "images.parquet")
    fields = ("split", "pair_id", "reference_id", "target_id", "modification")
    triplets = [
        dict(zip(fields, row, strict=True)) | {"caption": None, "keywords": None, "subset": None}
        for row in TRIPLETS_ROWS
    ]
    write_table(pa.Table.from_pylist(triplets, TRIPLETS), dirs["prepare"] / "triplets.parquet")
    captions = [{"image_id": f"img{i}", "caption": f"a photo of thing {i}"} for i in range(5)]
    write_table(pa.Table.from_pylist(captions, CAPTIONS), dirs["caption"] / "captions.parquet")
    keywords = [
        {"split": s, "pair_id": p, "keywords": mod.split(" ")[-2:]}
        for s, p, _, _, mod in TRIPLETS_ROWS
    ]
    write_table(pa.Table.from_pylist(keywords, KEYWORDS), dirs["keywords"] / "keywords.parquet")
    return dirs


def _params(scheduler: str = "sync", workers: int = 1, **render) -> Params:
    render = {"shards": 3, "font_size": 10} | render
    return Params(
        render=RenderParams(**render),
        parallel=ParallelParams(scheduler=scheduler, workers=workers),
    )


def _run(dirs: dict[str, Path], params: Params, out: str = "render"):
    out_dir = dirs["prepare"].parent / out
    report = run(params, dirs["prepare"], dirs["caption"], dirs["keywords"], out_dir)
    return report, out_dir


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def test_rows_text_queries_and_images(tmp_path):
    dirs = _layout(tmp_path)
    report, out_dir = _run(dirs, _params(text_template="{caption}, but {modification}"))
    assert (report.n_in, report.n_out, report.n_skipped) == (8, 8, 0)
    saved = json.loads((out_dir / "report.json").read_text())
    assert saved["n_in"] == 8 and saved["n_out"] == 8
    shards = list_shards(out_dir, "queries")
    assert [p.name for p in shards] == [f"queries-0000{i}-of-00003.parquet" for i in range(3)]
    table = read_shards(out_dir, "queries", RENDERED)
    keys = list(zip(table["split"].to_pylist(), table["pair_id"].to_pylist(), strict=True))
    assert keys == sorted((s, p) for s, p, *_ in TRIPLETS_ROWS)
    row = table.to_pylist()[keys.index(("train", "t4"))]
    assert row["reference_id"] == "img2" and row["target_id"] == "img4"
    assert row["text_query"] == "a photo of thing 2, but grey, not blue"
    assert row["keywords"] == ["not", "blue"]
    visual = decode_png(row["visual_query"])
    assert visual.size == (64, 40)  # the reference's own size: no canvas_size set
    pixels = np.asarray(visual)
    assert tuple(pixels[-1, -1]) == COLORS[2]  # reference shows through below the text
    assert tuple(pixels[3, 3]) != COLORS[2]  # the text box sits top-left


def test_small_row_groups_hold_the_same_rows(tmp_path, monkeypatch):
    dirs = _layout(tmp_path)
    _, whole = _run(dirs, _params(shards=1), out="whole")
    monkeypatch.setattr(render_module, "ROWS_PER_GROUP", 3)
    _, grouped = _run(dirs, _params(shards=1), out="grouped")
    path = list_shards(grouped, "queries")[0]
    assert pq.read_metadata(path).num_row_groups == 3  # 8 rows in groups of 3
    assert read_shards(grouped, "queries", RENDERED).equals(read_shards(whole, "queries", RENDERED))


def test_canvas_size_and_template_quirk(tmp_path):
    dirs = _layout(tmp_path)
    _, out_dir = _run(dirs, _params(canvas_size=32, text_template="{caption}, but{modification}"))
    row = read_shards(out_dir, "queries", RENDERED).to_pylist()[0]
    assert decode_png(row["visual_query"]).size == (32, 32)
    assert ", butis green and larger" in row["text_query"]


def test_sync_and_local_cluster_give_identical_bytes(tmp_path):
    dirs = _layout(tmp_path)
    _, sync_dir = _run(dirs, _params("sync"), out="sync")
    _, cluster_dir = _run(dirs, _params("local", workers=2), out="cluster")
    sync_shards = list_shards(sync_dir, "queries")
    cluster_shards = list_shards(cluster_dir, "queries")
    assert len(sync_shards) == len(cluster_shards) == 3
    for ours, theirs in zip(sync_shards, cluster_shards, strict=True):
        assert ours.read_bytes() == theirs.read_bytes()
    report = (sync_dir / "report.json").read_bytes()
    assert report == (cluster_dir / "report.json").read_bytes()


def test_corrupt_reference_fails_or_is_skipped(tmp_path):
    dirs = _layout(tmp_path)
    (dirs["images"] / "img0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(BadRecordError, match="train/t1.*img0.*unreadable"):
        _run(dirs, _params(on_bad_record="fail"))
    report, out_dir = _run(dirs, _params(on_bad_record="skip"))
    # img0 is the reference of t1 and t3.
    assert (report.n_in, report.n_out, report.n_skipped) == (8, 6, 2)
    assert [s["record"] for s in report.skipped] == ["triplet train/t1", "triplet train/t3"]
    assert "img0.png" in report.skipped[0]["reason"]
    assert json.loads((out_dir / "report.json").read_text())["n_skipped"] == 2
    assert len(read_shards(out_dir, "queries", RENDERED)) == 6


def test_missing_caption_and_keywords_are_bad_records(tmp_path):
    dirs = _layout(tmp_path)
    captions = [{"image_id": f"img{i}", "caption": f"thing {i}"} for i in range(5) if i != 4]
    write_table(pa.Table.from_pylist(captions, CAPTIONS), dirs["caption"] / "captions.parquet")
    keywords = [
        {"split": s, "pair_id": p, "keywords": ["x"]} for s, p, *_ in TRIPLETS_ROWS if p != "v1"
    ]
    write_table(pa.Table.from_pylist(keywords, KEYWORDS), dirs["keywords"] / "keywords.parquet")
    with pytest.raises(BadRecordError, match="no caption for reference image 'img4'.*caption"):
        _run(dirs, _params())
    report, _ = _run(dirs, _params(on_bad_record="skip"))
    reasons = {s["record"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"triplet train/t5", "triplet val/v1", "triplet val/v3"}
    assert "no keywords" in reasons["triplet val/v1"]
    assert report.n_out == 5


def test_bad_template_is_rejected_before_work(tmp_path):
    dirs = _layout(tmp_path)
    with pytest.raises(ValueError, match="render.text_template"):
        _run(dirs, _params(text_template="{caption} {target}"))
    assert not (tmp_path / "render").exists()


def test_duplicate_pair_ids_are_rejected(tmp_path):
    dirs = _layout(tmp_path)
    rows = [
        {"split": "val", "pair_id": "v1", "reference_id": f"img{i}", "target_id": "img0"}
        | {"modification": "x", "caption": None, "keywords": None, "subset": None}
        for i in (1, 2)
    ]
    write_table(pa.Table.from_pylist(rows, TRIPLETS), dirs["prepare"] / "triplets.parquet")
    with pytest.raises(ValueError, match="duplicate triplet val/v1"):
        _run(dirs, _params())


def test_resume_reuses_finished_shards(tmp_path, monkeypatch):
    dirs = _layout(tmp_path)
    first, out_dir = _run(dirs, _params())
    shards = list_shards(out_dir, "queries")
    before = {p.name: (_stamp(p), p.read_bytes()) for p in shards}

    missing_rows = pq.read_metadata(shards[1]).num_rows
    calls = []
    real = render_module.render_visual_query
    monkeypatch.setattr(
        render_module,
        "render_visual_query",
        lambda *args: calls.append(args[1]) or real(*args),
    )
    shards[1].unlink()
    again, _ = _run(dirs, _params())
    assert again.as_dict() == first.as_dict()
    assert _stamp(shards[0]) == before[shards[0].name][0]
    assert _stamp(shards[2]) == before[shards[2].name][0]
    assert shards[1].read_bytes() == before[shards[1].name][1]
    assert len(calls) == missing_rows == 2  # only the missing shard's rows were drawn again

    calls.clear()
    _run(dirs, _params(font_size=9))  # a params change invalidates every shard
    assert len(calls) == 8
    assert all(_stamp(p) != before[p.name][0] for p in (shards[0], shards[2]))


def test_replaced_reference_file_rerenders_its_shard(tmp_path):
    dirs = _layout(tmp_path)
    _, out_dir = _run(dirs, _params())
    shards = list_shards(out_dir, "queries")
    before = [_stamp(p) for p in shards]
    # img3 is only the reference of val/v2, which sorts into the last shard.
    Image.new("RGB", (72, 40), (0, 0, 0)).save(dirs["images"] / "img3.png")
    _run(dirs, _params())
    assert [_stamp(p) == b for p, b in zip(shards, before, strict=True)] == [True, True, False]
    rows = read_shards(out_dir, "queries", RENDERED).to_pylist()
    v2 = next(row for row in rows if row["pair_id"] == "v2")
    assert tuple(np.asarray(decode_png(v2["visual_query"]))[-1, -1]) == (0, 0, 0)


def test_new_shard_count_removes_stale_shards(tmp_path):
    dirs = _layout(tmp_path)
    _, out_dir = _run(dirs, _params(shards=3))
    _run(dirs, _params(shards=2))
    names = sorted(p.name for p in out_dir.glob("queries-*.parquet"))
    assert names == ["queries-00000-of-00002.parquet", "queries-00001-of-00002.parquet"]
    assert len(read_shards(out_dir, "queries", RENDERED)) == 8


def test_more_shards_than_rows_and_skipped_shards_resume(tmp_path):
    dirs = _layout(tmp_path)
    (dirs["images"] / "img0.png").write_bytes(b"")
    report, out_dir = _run(dirs, _params(shards=10, on_bad_record="skip"))
    assert (report.n_in, report.n_out, report.n_skipped) == (8, 6, 2)
    assert len(list_shards(out_dir, "queries")) == 10
    # Reused shards bring their stored skips back into the report.
    again, _ = _run(dirs, _params(shards=10, on_bad_record="skip"))
    assert again.as_dict() == report.as_dict()
