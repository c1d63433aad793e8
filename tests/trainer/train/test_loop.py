"""End-to-end train / resume / evaluate on tiny random shards and the `dqu-test` CLIP (CPU)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.factories import evaluate_split, write_inputs
from trainer.config import ClipConfig, TrainConfig
from trainer.models.saved import load_trained
from trainer.train import run as run_module
from trainer.train.checkpoint import load_state
from trainer.train.loop import train
from trainer.train.run import TrainConfigError

CLIP = ClipConfig(model="dqu-test")
CFG = TrainConfig(epochs=2, batch_size=8, device="cpu", deterministic=True, lr=1e-3,
                  clip_lr=1e-4, lr_decay_epoch=2, early_stop_patience=5)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    write_inputs(root, n_train=24, n_val=8, n_images=16)
    return root


def _metrics_rows(out_dir: Path, name: str) -> list[str]:
    return (out_dir / "dvclive" / "plots" / "metrics" / name).read_text().splitlines()


def test_two_epochs_write_checkpoint_model_summary_and_dvclive(inputs: Path,
                                                               tmp_path: Path) -> None:
    result = train(CLIP, CFG, "dqu", 0, inputs, tmp_path)
    assert result.epochs_run == 2 and 1 <= result.best_epoch <= 2
    assert result.selection == "val R@10"
    assert (tmp_path / "checkpoint" / "state.pt").is_file()
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert "logit_scale" in weights and any(k.startswith("head.") for k in weights)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["best_epoch"] == result.best_epoch
    assert len(_metrics_rows(tmp_path, "train/loss.tsv")) == 3  # header + 2 epochs
    assert len(_metrics_rows(tmp_path, "val/R@10.tsv")) == 3
    lrs = [float(r.split("\t")[-1]) for r in _metrics_rows(tmp_path, "lr/head.tsv")[1:]]
    assert lrs == pytest.approx([1e-3, 1e-4])  # epoch lr_decay_epoch=2 is the first decayed
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / "dvc.yaml").exists()
    model = load_trained(CLIP, "dqu", CFG.dropout, tmp_path, "cpu")
    evaluated = evaluate_split(model, inputs, "val", (1, 10), 4)
    best = result.history[result.best_epoch - 1]
    assert evaluated.metrics["R@10"] == pytest.approx(best["val/R@10"])
    assert len(evaluated.top_ids) == 8 and len(evaluated.top_ids[0]) == 10
    reference_of = dict(zip(evaluated.pair_ids, _val_references(inputs), strict=True))
    assert all(reference_of[p] not in top for p, top in
               zip(evaluated.pair_ids, evaluated.top_ids, strict=True))


def _val_references(inputs: Path) -> list[str]:
    from trainer.data.tables import load_queries

    return load_queries(inputs, "val").reference_ids


def test_training_lowers_the_loss(inputs: Path, tmp_path: Path) -> None:
    cfg = replace(CFG, epochs=3, lr_decay_epoch=10, dropout=0.0, grad_checkpointing=True)
    result = train(CLIP, cfg, "dqu", 0, inputs, tmp_path)
    losses = [record["train/loss"] for record in result.history]
    assert losses[-1] < losses[0]


def test_resume_after_interruption_equals_uninterrupted_run(inputs: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    full = train(CLIP, CFG, "dqu", 1, inputs, tmp_path / "full")
    real_save = run_module.save_state

    def save_then_die(path, state):
        real_save(path, state)
        raise KeyboardInterrupt("simulated kill after the first checkpoint")

    monkeypatch.setattr(run_module, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(CLIP, CFG, "dqu", 1, inputs, tmp_path / "split")
    monkeypatch.setattr(run_module, "save_state", real_save)
    assert load_state(tmp_path / "split" / "checkpoint" / "state.pt")["progress"]["next_epoch"] == 1
    resumed = train(CLIP, CFG, "dqu", 1, inputs, tmp_path / "split")
    assert resumed.history == full.history
    full_weights = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed_weights = load_file(str(tmp_path / "split" / "model.safetensors"))
    for name, value in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], value, rtol=0, atol=0)
    assert len(_metrics_rows(tmp_path / "split", "train/loss.tsv")) == 3


def test_changed_settings_start_from_scratch(inputs: Path, tmp_path: Path) -> None:
    train(CLIP, replace(CFG, epochs=1), "visual", 0, inputs, tmp_path)
    result = train(CLIP, replace(CFG, epochs=1, lr=5e-4), "visual", 0, inputs, tmp_path)
    assert result.epochs_run == 1 and len(result.history) == 1


@pytest.mark.parametrize("mode", ["dqu", "text"])
def test_frozen_encoders_train_only_the_head(inputs: Path, tmp_path: Path, mode: str) -> None:
    before = load_trained_clip_state()
    result = train(CLIP, replace(CFG, freeze_encoders=True), mode, 0, inputs, tmp_path)
    assert result.epochs_run == 2 and (tmp_path / "model.safetensors").is_file()
    weights = load_file(str(tmp_path / "model.safetensors"))
    clip_weights = {k[len("clip."):]: v for k, v in weights.items() if k.startswith("clip.")}
    for name, value in before.items():
        torch.testing.assert_close(clip_weights[name], value, rtol=0, atol=0)
    assert weights["logit_scale"].item() != 10.0
    assert "val/R@10" in result.history[0]


def load_trained_clip_state() -> dict[str, torch.Tensor]:
    """The CLIP weights train() starts from with seed 0 (random init after seeding)."""
    from trainer.models.clip import load_clip

    torch.manual_seed(0)
    return {k: v.clone() for k, v in load_clip(CLIP).model.state_dict().items()}


def test_without_val_queries_selection_uses_train_loss(tmp_path: Path) -> None:
    write_inputs(tmp_path / "inputs", n_train=16, n_val=0, n_images=10)
    result = train(CLIP, replace(CFG, epochs=1), "visual", 0, tmp_path / "inputs",
                   tmp_path / "out")
    assert result.selection == "train loss"
    assert result.best_metric == pytest.approx(result.history[0]["train/loss"])


def test_bad_settings_are_rejected(inputs: Path, tmp_path: Path) -> None:
    # TrainConfig itself refuses the name (trainer/checks.py), before train() runs
    with pytest.raises(ValueError, match="val_metric"):
        train(CLIP, replace(CFG, val_metric="MRR"), "dqu", 0, inputs, tmp_path)
    with pytest.raises(TrainConfigError, match="mode"):
        train(CLIP, CFG, "fused", 0, inputs, tmp_path)
    with pytest.raises(ValueError, match="built for model"):
        train(ClipConfig(model="dqu-tiny"), CFG, "dqu", 0, inputs, tmp_path)


def test_compile_setting_compiles_blocks_and_resumes_uncompiled_runs(inputs: Path,
                                                                     tmp_path: Path,
                                                                     monkeypatch) -> None:
    compiled_models = []

    def compile_for_test(model):
        compiled_models.append(model)
        return loop_compile(model, backend="aot_eager")  # inductor: minutes of C++ on CPU

    loop_compile = run_module.compile_blocks
    monkeypatch.setattr(run_module, "compile_blocks", compile_for_test)
    one_epoch = replace(CFG, epochs=1)
    train(CLIP, one_epoch, "dqu", 0, inputs, tmp_path)
    assert compiled_models == []
    # Compiling changes no maths, so a run continued with it on still resumes the checkpoint.
    resumed = train(CLIP, replace(CFG, compile=True), "dqu", 0, inputs, tmp_path)
    assert len(compiled_models) == 1
    assert resumed.epochs_run == 2 and len(resumed.history) == 2


def test_frozen_best_head_is_written_once_and_survives_a_kill(inputs: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    frozen = replace(CFG, freeze_encoders=True, epochs=3)
    full = train(CLIP, frozen, "dqu", 0, inputs, tmp_path / "full")
    # The file holds the best epoch's head: evaluating it reproduces that epoch's val recall.
    model = load_trained(CLIP, "dqu", frozen.dropout, tmp_path / "full", "cpu")
    best = full.history[full.best_epoch - 1]
    assert evaluate_split(model, inputs, "val", (1, 10), 4).metrics["R@10"] == \
        pytest.approx(best["val/R@10"])
    # Killed right after the last epoch's checkpoint, before the final write: the resumed run
    # has no epoch left to train, yet writes the same best weights from the checkpoint.
    real_save = run_module.save_state
    saves = []

    def save_then_die_at_last_epoch(path, state):
        real_save(path, state)
        saves.append(path)
        if len(saves) == frozen.epochs:
            raise KeyboardInterrupt("simulated kill before the model file is written")

    monkeypatch.setattr(run_module, "save_state", save_then_die_at_last_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(CLIP, frozen, "dqu", 0, inputs, tmp_path / "killed")
    monkeypatch.setattr(run_module, "save_state", real_save)
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    train(CLIP, frozen, "dqu", 0, inputs, tmp_path / "killed")
    full_weights = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed_weights = load_file(str(tmp_path / "killed" / "model.safetensors"))
    for name, value in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], value, rtol=0, atol=0)


@pytest.mark.parametrize("freeze", [False, True])
def test_one_per_reference_epochs_hold_one_triplet_per_reference(inputs: Path, tmp_path: Path,
                                                                 monkeypatch, freeze) -> None:
    from trainer.data.sampler import EpochBatchSampler
    from trainer.data.tables import load_queries

    references = load_queries(inputs, "train").reference_ids
    drawn: dict[int, list[int]] = {}
    real_iter = EpochBatchSampler.__iter__

    def recording(sampler):
        for batch in real_iter(sampler):
            drawn.setdefault(sampler.epoch, []).extend(batch)
            yield batch

    monkeypatch.setattr(EpochBatchSampler, "__iter__", recording)
    # batch 16 >= the distinct references (16 images): one batch, nothing dropped
    cfg = replace(CFG, epochs=3, batch_size=16, epoch_sampling="one_per_reference",
                  freeze_encoders=freeze)
    result = train(CLIP, cfg, "dqu", 0, inputs, tmp_path)
    assert result.epochs_run == 3 and sorted(drawn) == [0, 1, 2]
    distinct = sorted(set(references))
    assert len(distinct) < len(references)  # some references have several triplets to pick
    for rows in drawn.values():
        assert sorted(references[i] for i in rows) == distinct
    assert len({tuple(sorted(rows)) for rows in drawn.values()}) > 1
