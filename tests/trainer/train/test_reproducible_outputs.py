"""Two identical training runs write byte-identical files: no clock or host in any output."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.factories import write_inputs
from trainer.config import ClipConfig, TrainConfig
from trainer.train.loop import train

CLIP = ClipConfig(model="dqu-test")
CFG = TrainConfig(epochs=2, batch_size=8, device="cpu", deterministic=True, lr=1e-3,
                  clip_lr=1e-4, lr_decay_epoch=1, early_stop_patience=5)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("freeze", [False, True], ids=["end-to-end", "frozen-encoders"])
def test_two_runs_write_identical_bytes(tmp_path: Path, freeze: bool) -> None:
    write_inputs(tmp_path / "inputs", n_train=16, n_val=8, n_images=12)
    cfg = replace(CFG, freeze_encoders=freeze)
    for name in ("a", "b"):
        train(CLIP, cfg, "dqu", 0, tmp_path / "inputs", tmp_path / name)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    for expected in ("train_summary.json", "model.safetensors", "checkpoint/state.pt",
                     "dvclive/metrics.json", "dvclive/plots/metrics/train/loss.tsv"):
        assert expected in first
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, f"files that differ between two identical runs: {differing}"
    summary = json.loads(first["train_summary.json"])
    metrics = json.loads(first["dvclive/metrics.json"])
    assert not [key for key in [*summary, *metrics] if "time" in key]
