"""Every stage's run() on a tiny dataset, chained the way dvc.yaml chains them."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.core import case_figure
from pipeline.core.params import (
    CaptionParams,
    EvaluateParams,
    KeywordsParams,
    ParallelParams,
    Params,
    PrepareParams,
    PretrainParams,
    RenderParams,
)
from pipeline.core.shards import CAPTIONS, KEYWORDS, RENDERED, read_shards, read_table
from pipeline.datasets import ADAPTERS
from pipeline.stages import (
    caption,
    casestudy,
    evaluate,
    inputs,
    keywords,
    prepare,
    pretrain,
    render,
    train,
)
from tests.factories import tiny_dataset
from trainer.config import QUERY_MODES, ClipConfig, TrainConfig
from trainer.models.clip import tokenize


@pytest.fixture(scope="module")
def run_all(tmp_path_factory):
    ADAPTERS["tiny"] = tiny_dataset
    root = tmp_path_factory.mktemp("pipeline")
    params = Params(
        parallel=ParallelParams(scheduler="sync"),
        prepare=PrepareParams(dataset="tiny"),
        caption=CaptionParams(backend="provided"),
        keywords=KeywordsParams(backend="provided"),
        render=RenderParams(shards=2, font_size=8),
        clip=ClipConfig(model="dqu-test"),
        pretrain=PretrainParams(epochs=2, batch_size=4, warmup_steps=1, word_images=8),
        train=TrainConfig(epochs=2, batch_size=4, lr=1e-3, clip_lr=1e-3),
        evaluate=EvaluateParams(ks=[1, 2, 5], batch_size=8),
    )
    dirs = {name: root / name for name in ("prepare", "caption", "keywords", "render", "inputs")}
    prepare.run(params, dirs["prepare"])
    caption.run(params, dirs["prepare"], dirs["caption"])
    keywords.run(params, dirs["prepare"], dirs["keywords"])
    render.run(params, dirs["prepare"], dirs["caption"], dirs["keywords"], dirs["render"])
    inputs.run(params, dirs["prepare"], dirs["render"], dirs["inputs"])
    pretrain.run(params, dirs["prepare"], dirs["keywords"], root / "pretrain")
    for mode in QUERY_MODES:
        train.run(params, mode, dirs["inputs"], root / "train" / mode,
                  pretrain_dir=root / "pretrain")
    metrics = evaluate.run(params, dirs["inputs"], root / "train", root / "evaluate",
                           pretrain_dir=root / "pretrain")
    casestudy.run(params, dirs["prepare"], dirs["render"], root / "evaluate", root / "casestudy")
    yield root, params, metrics
    del ADAPTERS["tiny"]


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_every_stage_accounts_for_every_record(run_all):
    root, _, _ = run_all
    for stage, n_in in (("prepare", 16), ("keywords", 16), ("render", 16), ("caption", 14)):
        report = _report(root / stage)
        assert report["n_in"] == n_in, stage
        assert report["n_in"] == report["n_out"] + report["n_skipped"], stage


def test_caption_and_keyword_tables(run_all):
    root, _, _ = run_all
    captions = read_table(root / "caption" / "captions.parquet", CAPTIONS).to_pylist()
    assert {"image_id": "train-red-8", "caption": "a red square"} in captions
    kws = read_table(root / "keywords" / "keywords.parquet", KEYWORDS).to_pylist()
    assert {"split": "test", "pair_id": "test-0", "keywords": ["green"]} in kws


def test_keybert_tasks_take_their_selection_from_params(run_all, tmp_path):
    text = ("is darker and has long sleeves and a floral print",)
    task = keywords.KeywordTask(texts=text, params=KeywordsParams(max_phrases=1))
    assert keywords.extract_chunk(task) == [["floral print"]]  # KeyBERT's top phrase
    # a bad threshold fails before any worker starts (params refuse it), and writes nothing
    root, params, _ = run_all
    with pytest.raises(ValueError, match=r"keywords.min_score: 2.0 is out of range"):
        bad = replace(params, keywords=KeywordsParams(min_score=2.0))
        keywords.run(bad, root / "prepare", tmp_path / "keywords")
    assert not (tmp_path / "keywords").exists()


def test_render_writes_unified_queries(run_all):
    root, _, _ = run_all
    rows = read_shards(root / "render", "queries", RENDERED).to_pylist()
    assert len(rows) == 16
    first = next(r for r in rows if r["pair_id"] == "test-0")
    assert first["text_query"] == "a red square, but make it green instead of red"
    assert first["keywords"] == ["green"]
    assert first["visual_query"][:8] == b"\x89PNG\r\n\x1a\n"


def test_inputs_meta_matches_the_backbone(run_all):
    root, _, _ = run_all
    meta = json.loads((root / "inputs" / "meta.json").read_text())
    assert meta["model"] == "dqu-test" and meta["image_size"] == 16
    assert _report(root / "inputs")["n_in"] == 16 + 18  # queries + images


def test_inputs_store_the_modification_tokens_the_raw_query_reads(run_all):
    import pyarrow.parquet as pq

    root, params, _ = run_all
    triplets = read_table(root / "prepare" / "triplets.parquet").to_pylist()
    text_of = {(t["split"], t["pair_id"]): t["modification"] for t in triplets}
    for path in sorted((root / "inputs").glob("queries-*.parquet")):
        rows = pq.read_table(path).to_pylist()
        expected = tokenize(params.clip.model, [text_of[r["split"], r["pair_id"]]
                                                for r in rows])
        assert [r["modification_tokens"] for r in rows] == expected.tolist()


def test_train_and_evaluate_outputs(run_all):
    root, params, metrics = run_all
    for mode in QUERY_MODES:
        assert (root / "train" / mode / "model.safetensors").is_file()
    assert set(metrics) == set(QUERY_MODES)
    written = json.loads((root / "evaluate" / "metrics.json").read_text())
    free = written["test"].pop("training_free")
    shapes = written["test"].pop("geometry")
    assert written == {"test": metrics}
    # The encoders before fine-tuning, no head: every mode without a trained head.
    assert set(free) == {"dqu", "text", "visual", "sum"}
    assert all(set(values) == {"R@1", "R@2", "R@5"} for values in free.values())
    assert set(shapes) == {*QUERY_MODES, "training_free"}
    assert set(shapes["training_free"]) == set(free)
    for shape in [*(shapes[m] for m in QUERY_MODES), *shapes["training_free"].values()]:
        assert set(shape) == {"query_target_cos", "query_nearest_cos", "modality_gap"}
        assert -1.0 <= shape["query_target_cos"] <= shape["query_nearest_cos"] <= 1.0
        assert 0.0 <= shape["modality_gap"] <= 2.0
    for values in metrics.values():
        assert set(values) == {"R@1", "R@2", "R@5"}
        assert 0.0 <= values["R@1"] <= values["R@2"] <= values["R@5"] <= 100.0
    curve = json.loads((root / "evaluate" / "recall_curve.json").read_text())
    assert [row["k"] for row in curve][:2] == [1, 2]
    # One row per query and mode: exact ranks agree with R@1, ids with the gallery size.
    import pyarrow.parquet as pq

    per_query = pq.read_table(root / "evaluate" / "per_query.parquet").to_pylist()
    assert {row["mode"] for row in per_query} == set(QUERY_MODES)
    # the text weight: dqu's lambda and the combiner's dynamic scalar, no other mode's
    assert {row["mode"] for row in per_query if row["lambda"] is not None} == {"dqu",
                                                                               "combiner"}
    for mode in QUERY_MODES:
        rows = [row for row in per_query if row["mode"] == mode]
        hits = sum(row["target_rank"] < 1 for row in rows)
        assert 100.0 * hits / len(rows) == pytest.approx(metrics[mode]["R@1"], abs=1e-3)
        assert all(0 < len(row["top10"]) <= 10 for row in rows)


def test_pretrain_writes_the_checkpoint_train_starts_from(run_all):
    root, _, _ = run_all
    summary = json.loads((root / "pretrain" / "pretrain_summary.json").read_text())
    assert summary["epochs"] == 2 and len(summary["loss"]) == 2
    # 6 train images with their descriptions + 8 with drawn keywords
    assert summary["pairs"] == _report(root / "pretrain")["n_out"] == 14
    assert (root / "pretrain" / "clip.safetensors").is_file()


def test_pretrain_writes_the_same_checkpoint_twice(run_all, tmp_path):
    # A second run of one commit must give the same bytes (dvc.lock names them): the random
    # initial weights come from pretrain.seed, whatever the process's RNG state was before.
    root, params, _ = run_all
    torch.manual_seed(12345)
    pretrain.run(params, root / "prepare", root / "keywords", tmp_path / "again")
    assert ((tmp_path / "again" / "clip.safetensors").read_bytes()
            == (root / "pretrain" / "clip.safetensors").read_bytes())


def test_casestudy_figures_span_lambda(run_all):
    import pyarrow.parquet as pq
    from PIL import Image

    root, _, _ = run_all
    cases = json.loads((root / "casestudy" / "cases.json").read_text())
    assert 1 <= len(cases) <= 4  # 4 test queries, 6 figures asked: each query once
    lambdas = [case["lambda"] for case in cases]
    assert lambdas == sorted(lambdas)
    rows = pq.read_table(root / "evaluate" / "per_query.parquet").to_pylist()
    dqu = {r["pair_id"]: r for r in rows if r["mode"] == "dqu"}
    for case in cases:
        assert case["top"] == dqu[case["pair_id"]]["top10"][:5]
        assert set(case["modes"]) == set(QUERY_MODES)
        assert case["compared"]["mode"] == "combiner"
        with Image.open(root / "casestudy" / "figures" / case["figure"]) as image:
            assert image.width > 7 * case_figure.THUMB
    assert all(r["lambda"] is None for r in rows if r["mode"] not in ("dqu", "combiner"))
