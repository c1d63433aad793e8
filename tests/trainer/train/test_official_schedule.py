"""The official DQU-CIR training schedule: lr decay epoch, summed val metrics, tolerance-counter
early stopping, fp16 + GradScaler training with fp32 validation (tiny data, `dqu-test`, CPU)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.factories import write_inputs
from trainer.config import ClipConfig, TrainConfig
from trainer.data.streaming import StreamedPixels
from trainer.runtime import resolve_precision
from trainer.train import epoch as epoch_module
from trainer.train import loop
from trainer.train.loop import train
from trainer.train.optim import lr_factor, make_scaler
from trainer.train.run import TrainConfigError
from trainer.train.selection import should_stop

CLIP = ClipConfig(model="dqu-test")
# Frozen encoders: the head alone trains, so each epoch takes milliseconds.
CFG = TrainConfig(epochs=4, batch_size=8, device="cpu", deterministic=True, lr=1e-3,
                  clip_lr=1e-4, lr_decay_epoch=3, early_stop_patience=0, freeze_encoders=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    write_inputs(root, n_train=16, n_val=6, n_images=10)
    return root


def _logged(out_dir: Path, name: str) -> list[float]:
    rows = (out_dir / "dvclive" / "plots" / "metrics" / name).read_text().splitlines()[1:]
    return [float(row.split("\t")[-1]) for row in rows]


def _scripted(monkeypatch, per_epoch: list[dict[str, float]]) -> None:
    """Make validation return these metrics, one dict per epoch, in order."""
    values = iter(per_epoch)
    monkeypatch.setattr(loop, "_val_metrics", lambda run, steps: dict(next(values)))


def test_lr_decay_epoch_is_the_first_epoch_at_the_lower_rate(inputs: Path,
                                                             tmp_path: Path) -> None:
    train(CLIP, CFG, "dqu", 0, inputs, tmp_path)
    # lr_decay_epoch 3: epochs 1-2 at lr, epoch 3 is the first at lr x 0.1 (official 8 -> 8th).
    assert _logged(tmp_path, "lr/head.tsv") == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


def test_lr_decay_epoch_zero_and_one_decay_from_the_start() -> None:
    for start in (0, 1):
        cfg = replace(CFG, lr_decay_epoch=start)
        assert [lr_factor(cfg, e) for e in range(3)] == pytest.approx([0.1] * 3)
    official = replace(CFG, lr_decay_epoch=8)
    assert [lr_factor(official, e) for e in (6, 7, 8)] == pytest.approx([1, 0.1, 0.1])


def test_a_list_val_metric_selects_the_epoch_with_the_best_sum(inputs: Path, tmp_path: Path,
                                                                monkeypatch) -> None:
    # sums 110, 120, 110: R@10 alone would pick epoch 3, the sum picks epoch 2.
    _scripted(monkeypatch, [{"R@10": 50.0, "R@50": 60.0}, {"R@10": 40.0, "R@50": 80.0},
                            {"R@10": 55.0, "R@50": 55.0}])
    result = train(CLIP, replace(CFG, epochs=3, val_metric=["R@10", "R@50"]), "dqu", 0,
                   inputs, tmp_path)
    assert result.best_epoch == 2 and result.best_metric == pytest.approx(120.0)
    assert result.selection == "val R@10+R@50"
    assert _logged(tmp_path, "val/R@50.tsv") == pytest.approx([60.0, 80.0, 55.0])


def test_early_stopping_follows_the_official_tolerance_counter(inputs: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    # Best at epoch 2; patience 3 validates epochs 3 and 4 (1 and 2 epochs since the best) and
    # stops: the official loop would train epoch 5 (tolerance 3) without validating it.
    _scripted(monkeypatch, [{"R@10": v} for v in (10.0, 20.0, 15.0, 15.0, 30.0, 30.0)])
    result = train(CLIP, replace(CFG, epochs=6, early_stop_patience=3), "dqu", 0, inputs,
                   tmp_path)
    assert result.epochs_run == 4 and result.stopped_early and result.best_epoch == 2


def test_should_stop_matches_the_official_counter() -> None:
    # official: tolerance = epochs since the best; validate only while tolerance < patience
    for patience in range(1, 7):
        for without in range(8):
            next_tolerance = without + 1
            assert should_stop(without, patience) == (next_tolerance >= patience)
    assert not any(should_stop(without, 0) for without in range(10))


def test_early_stop_at_the_last_epoch_is_not_early(inputs: Path, tmp_path: Path,
                                                   monkeypatch) -> None:
    _scripted(monkeypatch, [{"R@10": 10.0}, {"R@10": 5.0}])
    result = train(CLIP, replace(CFG, epochs=2, early_stop_patience=2), "dqu", 0, inputs,
                   tmp_path)
    assert result.epochs_run == 2 and not result.stopped_early


def test_fp16_resolves_to_autocast_with_a_grad_scaler(monkeypatch) -> None:
    cuda = torch.device("cuda")
    precision = resolve_precision("fp16", cuda)
    assert precision.dtype == torch.float16 and precision.use_scaler
    # GradScaler turns itself off without CUDA; pretend there is one (it allocates lazily).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert make_scaler(precision, cuda).is_enabled()
    assert not make_scaler(resolve_precision("bf16", cuda), cuda).is_enabled()
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("freeze", [False, True], ids=["end-to-end", "frozen-encoders"])
def test_validation_runs_in_fp32_under_training_autocast(inputs: Path, tmp_path: Path,
                                                         monkeypatch, freeze: bool) -> None:
    seen = []
    real_gallery = epoch_module.embed_images
    real_embed = loop.embed

    def gallery_spy(model, images, meta, batch_size, device, precision):
        if isinstance(images, StreamedPixels):  # the val gallery (train targets: in memory)
            seen.append(precision.dtype)
        return real_gallery(model, images, meta, batch_size, device, precision)

    def embed_spy(model, data, batch_size, device, amp="off"):
        seen.append(resolve_precision(amp, device).dtype)
        return real_embed(model, data, batch_size, device, amp)

    monkeypatch.setattr(epoch_module, "embed_images", gallery_spy)
    monkeypatch.setattr(loop, "embed", embed_spy)
    result = train(CLIP, replace(CFG, epochs=1, amp="bf16", freeze_encoders=freeze), "dqu", 0,
                   inputs, tmp_path)
    assert seen == [None]  # fp32 (no autocast dtype), once: cache build or the epoch's val
    assert "val/R@10" in result.history[0]


def test_rsubset_validation_uses_the_given_subset_members(inputs: Path, tmp_path: Path) -> None:
    from trainer.data.tables import load_queries

    val = load_queries(inputs, "val")
    # Each subset holds the reference and the target only: with the reference left out, the
    # target is the subset's sole member, so Rsubset@1 is 100 whatever the model.
    subsets = {pair: [ref, target] for pair, ref, target in
               zip(val.pair_ids, val.reference_ids, val.target_ids, strict=True)}
    cfg = replace(CFG, epochs=1, val_metric=["R@10", "Rsubset@1"])
    result = train(CLIP, cfg, "dqu", 0, inputs, tmp_path, val_subsets=subsets)
    record = result.history[0]
    assert record["val/Rsubset@1"] == pytest.approx(100.0)
    assert result.best_metric == pytest.approx(record["val/R@10"] + 100.0)
    with pytest.raises(TrainConfigError, match="subset members"):
        train(CLIP, cfg, "dqu", 0, inputs, tmp_path / "none")


def test_caption_hit_rule_counts_any_image_with_the_target_caption(inputs: Path,
                                                                   tmp_path: Path) -> None:
    # One caption for every image: whatever ranks first has the target's caption.
    captions = {f"img{i:03d}": "a red dress" for i in range(10)}
    cfg = replace(CFG, epochs=1, val_metric=["R@1", "R@10", "R@50"], val_hit_rule="caption")
    result = train(CLIP, cfg, "dqu", 0, inputs, tmp_path, val_captions=captions)
    assert result.history[0]["val/R@1"] == pytest.approx(100.0)
    assert result.best_metric == pytest.approx(300.0)
    with pytest.raises(TrainConfigError, match="captions"):
        train(CLIP, cfg, "dqu", 0, inputs, tmp_path / "none")
