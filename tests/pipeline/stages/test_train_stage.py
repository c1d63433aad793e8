"""Stage `train` seeds training by train.seed alone and hands validation its protocol data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.core import protocol_data
from pipeline.core.loader_images import LoaderImages
from pipeline.core.params import Params
from pipeline.stages import train as stage
from trainer.config import ClipConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[3]


def test_top_level_seed_is_no_train_dependency() -> None:
    train = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]
    assert "seed" not in train["params"] and "train" in train["params"]
    prepare = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["prepare"]
    assert "seed" in prepare["params"]


def _capture(monkeypatch) -> list[tuple]:
    calls = []
    monkeypatch.setattr(stage, "train", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(stage, "env_rank", lambda: 1)  # skip the report (no shards here)
    # no input shards here: the augmentation check (another test's concern) reads them
    monkeypatch.setattr(stage, "check_augment", lambda params, inputs_dir: None, raising=False)
    return calls


def test_training_gets_train_seed_not_the_data_seed(monkeypatch, tmp_path: Path) -> None:
    calls = _capture(monkeypatch)
    params = Params(seed=3, clip=ClipConfig(model="dqu-test"), train=TrainConfig(seed=42))
    stage.run(params, "dqu", tmp_path, tmp_path / "out")
    (args, kwargs), = calls
    assert args[3] == 42 and kwargs == {"val_subsets": None, "val_captions": None,
                                        "image_maker": LoaderImages.from_params(params.render)}


def test_rsubset_validation_reads_val_subsets_from_prepare(monkeypatch, tmp_path: Path) -> None:
    calls = _capture(monkeypatch)
    rows = {"split": ["train", "val"], "pair_id": ["0", "1"], "subset": [["a"], ["b", "c"]]}
    pq.write_table(pa.table(rows), tmp_path / "triplets.parquet")
    monkeypatch.setattr(protocol_data, "read_table", lambda path, schema: pq.read_table(path))
    train_cfg = TrainConfig(val_metric=["R@10", "Rsubset@1"])
    params = dataclasses.replace(Params(clip=ClipConfig(model="dqu-test")), train=train_cfg)
    with pytest.raises(ValueError, match="prepare folder"):
        stage.run(params, "dqu", tmp_path, tmp_path / "out")
    stage.run(params, "dqu", tmp_path, tmp_path / "out", prepare_dir=tmp_path)
    assert calls[0][1]["val_subsets"] == {"1": ["b", "c"]}
