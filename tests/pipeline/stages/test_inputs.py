"""The inputs stage's query shards: modification tokens, and queries whose images failed."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.core.images import encode_png
from pipeline.core.shards import RENDERED, TRIPLETS, write_table
from pipeline.stages.input_shards import QueryShardTask, build_query_shard
from trainer.config import ClipConfig
from trainer.models.clip import tokenize


def _shards(root: Path) -> tuple[Path, Path]:
    png = encode_png(Image.new("RGB", (20, 20), (200, 10, 10)))
    rows = [("test", f"p{i}", f"ref{i}", f"tgt{i}") for i in range(3)]
    rendered = pa.table({
        "split": [r[0] for r in rows], "pair_id": [r[1] for r in rows],
        "reference_id": [r[2] for r in rows], "target_id": [r[3] for r in rows],
        "text_query": [f"a red square, but change {i}" for i in range(3)],
        "keywords": [["blue"]] * 3, "visual_query": [png] * 3}, schema=RENDERED)
    triplets = pa.table({
        "split": [r[0] for r in rows], "pair_id": [r[1] for r in rows],
        "reference_id": [r[2] for r in rows], "target_id": [r[3] for r in rows],
        "modification": [f"change {i}" for i in range(3)], "caption": [None] * 3,
        "keywords": [None] * 3, "subset": [None] * 3}, schema=TRIPLETS)
    write_table(rendered, root / "render.parquet", RENDERED)
    write_table(triplets, root / "triplets.parquet", TRIPLETS)
    return root / "render.parquet", root / "triplets.parquet"


def test_query_shards_store_the_modification_tokens(tmp_path: Path) -> None:
    render, triplets = _shards(tmp_path)
    task = QueryShardTask(str(render), str(tmp_path / "q.parquet"), ClipConfig("dqu-test"),
                          triplets_path=str(triplets))
    report = build_query_shard(task)
    table = pq.read_table(tmp_path / "q.parquet")
    assert report.n_out == 3
    assert table["modification_tokens"].to_pylist() == tokenize(
        "dqu-test", [f"change {i}" for i in range(3)]).tolist()


def test_a_query_whose_reference_failed_is_dropped_and_counted(tmp_path: Path) -> None:
    render, triplets = _shards(tmp_path)
    task = QueryShardTask(str(render), str(tmp_path / "q.parquet"), ClipConfig("dqu-test"),
                          on_bad_record="skip", unusable_images=frozenset({"ref1", "tgt2"}),
                          triplets_path=str(triplets))
    report = build_query_shard(task)
    table = pq.read_table(tmp_path / "q.parquet")
    assert table["pair_id"].to_pylist() == ["p0"]
    assert table["modification_tokens"].to_pylist() == tokenize("dqu-test", ["change 0"]).tolist()
    assert (report.n_in, report.n_out, report.n_skipped) == (3, 1, 2)
    reasons = {s["record"]: s["reason"] for s in report.skipped}
    assert "reference image 'ref1'" in reasons["triplet test/p1"]
    assert "target image 'tgt2'" in reasons["triplet test/p2"]
