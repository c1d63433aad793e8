"""Training loop: epochs, validation, best-epoch selection, early stopping, DVCLive logging."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.config import ClipConfig, TrainConfig, val_metric_names
from trainer.data.sources import ImageMaker
from trainer.eval.embed import embed, features_from_parts
from trainer.models.saved import MODEL_FILE, save_model_weights
from trainer.runtime import resolve_device
from trainer.train import distributed
from trainer.train.epoch import train_epoch_cached, train_epoch_end_to_end
from trainer.train.live_log import EpochLogger
from trainer.train.optim import head_state, lr_factor
from trainer.train.run import (
    Run,
    Steps,
    build_steps,
    check_settings,
    restore,
    save_checkpoint,
    say,
    setup,
    spill_dir,
)
from trainer.train.selection import (
    Captions,
    Subsets,
    ValScoring,
    is_improvement,
    selection_score,
    should_stop,
    val_metrics,
)
from trainer.util.atomic import write_text
from trainer.util.progress import Progress

SUMMARY_FILE = "train_summary.json"
LIVE_DIR = "dvclive"


@dataclass
class TrainResult:
    """Outcome of one training run; best_epoch is 1-based.

    The times cover this process alone and are printed, never written: DVC-tracked outputs
    must not change with the clock.
    """

    out_dir: Path
    model_path: Path
    epochs_run: int
    best_epoch: int
    best_metric: float
    selection: str
    stopped_early: bool
    wall_time_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_times_s: list[float] = field(default_factory=list)


def train(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
          inputs_dir: str | Path, out_dir: str | Path, resume: bool = True,
          val_subsets: Subsets | None = None, val_captions: Captions | None = None,
          image_maker: ImageMaker | None = None) -> TrainResult:
    """Train one model of a query mode (trainer.config.QUERY_MODES) on the input shards.

    `seed` seeds initialisation, shuffling and dropout (the pipeline passes train.seed).
    `val_subsets` (val pair id -> CIRR subset members) lets val_metric name Rsubset@K;
    `val_captions` (image id -> caption) is what val_hit_rule caption compares.
    Under `torchrun --nproc_per_node=N` each process trains on its slice of every global
    batch (DDP); rank 0 alone logs, evaluates and writes checkpoints and weights.
    `image_maker` makes the train images of inputs built with render.train_visual: loader
    (trainer.data.sources; the pipeline's is pipeline.core.loader_images.LoaderImages).
    """
    scoring = check_settings(train_cfg, mode, val_subsets, val_captions)
    with distributed.session(resolve_device(train_cfg.device)) as device:
        spilled = spill_dir(Path(out_dir))
        shutil.rmtree(spilled, ignore_errors=True)  # left by a killed run
        try:
            return _train(clip_cfg, train_cfg, mode, seed, Path(inputs_dir), Path(out_dir),
                          resume, device, scoring, image_maker)
        finally:
            # Unpacked pixels are scratch: the shards hold them, and they are as large as the
            # split (removing them keeps them out of the stage's DVC output too).
            shutil.rmtree(spilled, ignore_errors=True)
            with contextlib.suppress(OSError):  # other ranks may still hold theirs
                spilled.parent.rmdir()


def _train(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
           inputs_dir: Path, out_dir: Path, resume: bool, device: torch.device,
           scoring: ValScoring, image_maker: ImageMaker | None) -> TrainResult:
    """Body of `train` on this rank's device, inside the process group if there is one."""
    run = setup(clip_cfg, train_cfg, mode, seed, inputs_dir, out_dir, device, scoring,
                image_maker)
    if resume:
        restore(run)
    session_start = time.perf_counter()
    logger = _open_logger(run)
    steps = build_steps(run)
    epoch_times = []
    while run.progress.next_epoch < train_cfg.epochs and not run.progress.stopped_early:
        epoch_start = time.perf_counter()
        record, value = _run_epoch(run, steps)
        epoch_times.append(time.perf_counter() - epoch_start)
        if run.main:
            save_checkpoint(run)
            logger.log(record)
        shown = f"{value:.4f}" if run.val_data is None else f"{value:.2f}"
        say(f"[train {mode}] epoch {record['epoch']}/{train_cfg.epochs} loss "
             f"{record['train/loss']:.4f} {run.selection} {shown} ({epoch_times[-1]:.1f}s)")
    if logger is not None:
        logger.close()
    return _finish(run, time.perf_counter() - session_start, epoch_times)


def _open_logger(run: Run) -> EpochLogger | None:
    """Fresh DVCLive logs on rank 0, with the resumed epochs replayed into them."""
    if not run.main:
        return None
    shutil.rmtree(run.out_dir / LIVE_DIR, ignore_errors=True)
    logger = EpochLogger(run.out_dir / LIVE_DIR)
    logger.replay(run.progress.history)
    return logger


def _run_epoch(run: Run, steps: Steps) -> tuple[dict[str, float], float]:
    """Train, validate and pick the best epoch; return its record and the selection value."""
    epoch = run.progress.next_epoch
    loss = _train_one_epoch(run, steps, epoch)
    record = {"epoch": epoch + 1, "train/loss": loss}
    for group in run.optimizer.param_groups:
        record[f"lr/{group['name']}"] = group["lr"]
    if run.val_data is not None:
        value, higher = _validate_epoch(run, steps, record), True
    else:
        value, higher = loss, False
    _select_best(run, steps, epoch, value, higher)
    run.progress.history.append(record)
    run.progress.next_epoch = epoch + 1
    return record, value


def _train_one_epoch(run: Run, steps: Steps, epoch: int) -> float:
    """One epoch of optimiser steps at this epoch's learning rate; the loss over all ranks."""
    factor = lr_factor(run.train_cfg, epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    steps.sampler.set_epoch(epoch)
    if run.world > 1:
        distributed.seed_for_rank(run.seed, epoch)
    # Rank 0 alone reports, like say.
    with Progress(f"train {run.mode} epoch {epoch + 1}", len(steps.sampler), "batches",
                  enabled=run.main) as bar:
        if steps.cache is not None:
            loss = train_epoch_cached(run.model, steps.cache, steps.sampler, run.optimizer,
                                       run.scaler, run.device, steps.sync_grads,
                                       on_step=bar.update)
        else:
            loss = train_epoch_end_to_end(run.model, steps.loader, run.meta, run.optimizer,
                                           run.scaler, run.device, run.precision, steps.forward,
                                           on_step=bar.update)
    loss = distributed.mean_over_ranks(loss, run.device)
    if not math.isfinite(loss):
        raise FloatingPointError(f"train loss became {loss} in epoch {epoch + 1}; "
                                 "lower the learning rates or turn amp off")
    return loss


def _val_metrics(run: Run, steps: Steps) -> dict[str, float]:
    """Val R@K (and Rsubset@K) of the current model, always in fp32 as the official test code."""
    cache, batch = steps.cache, run.eval_batch
    if cache is not None:
        features = features_from_parts(run.model, cache.val_text, cache.val_visual,
                                       cache.val_gallery, batch)
    else:
        # amp off: training autocast (fp16 / bf16) must not leak into model selection.
        features = embed(run.model, run.val_data, batch, run.device, "off")
    return val_metrics(features, run.val_data, run.scoring)


def _validate_epoch(run: Run, steps: Steps, record: dict[str, float]) -> float:
    """Val metrics on rank 0 (added to `record`); every rank gets rank 0's selection score."""
    value = None
    if run.main:
        metrics = _val_metrics(run, steps)
        record.update({f"val/{k}": v for k, v in metrics.items()})
        value = selection_score(metrics, val_metric_names(run.train_cfg.val_metric))
    # Every rank takes the same early-stopping decision from rank 0's number.
    return distributed.broadcast_from_main(value)


def _select_best(run: Run, steps: Steps, epoch: int, value: float, higher: bool) -> None:
    """Keep the best epoch's weights and count epochs without improvement (early stopping)."""
    progress = run.progress
    tolerance = run.train_cfg.early_stop_tolerance if higher else 0.0
    if is_improvement(value, progress.best_metric, higher, tolerance):
        progress.best_metric, progress.best_epoch = value, epoch + 1
        progress.epochs_without_improvement = 0
        if run.main and steps.cache is not None:
            run.best_head = head_state(run.model)
        elif run.main:
            save_model_weights(run.model, run.out_dir / MODEL_FILE)
    else:
        progress.epochs_without_improvement += 1
    more_left = epoch + 1 < run.train_cfg.epochs
    progress.stopped_early = more_left and should_stop(progress.epochs_without_improvement,
                                                       run.train_cfg.early_stop_patience)


def _finish(run: Run, wall_time_s: float, epoch_times_s: list[float]) -> TrainResult:
    """Write the best weights (frozen encoders) and train_summary.json; return the result."""
    progress = run.progress
    if run.main and run.best_head is not None:
        save_model_weights(run.model, run.out_dir / MODEL_FILE, overrides=run.best_head)
    result = TrainResult(
        out_dir=run.out_dir,
        model_path=run.out_dir / MODEL_FILE,
        epochs_run=progress.next_epoch,
        best_epoch=progress.best_epoch,
        best_metric=float(progress.best_metric),
        selection=run.selection,
        stopped_early=progress.stopped_early,
        wall_time_s=wall_time_s,
        history=progress.history,
        epoch_times_s=epoch_times_s,
    )
    if run.main:
        write_text(run.out_dir / SUMMARY_FILE, json.dumps(_summary(run, result), indent=2) + "\n")
    say(f"[train {run.mode}] {len(epoch_times_s)} epoch(s) in {wall_time_s:.1f}s; best epoch "
         f"{result.best_epoch}/{result.epochs_run}")
    # Other ranks leave only once rank 0 has written everything.
    distributed.barrier()
    return result


def _summary(run: Run, result: TrainResult) -> dict:
    """train_summary.json: settings and outcome only (no times, so reruns give equal bytes)."""
    return {
        "mode": run.mode,
        "seed": run.seed,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "selection": result.selection,
        "stopped_early": result.stopped_early,
        "device": str(run.device),
        "precision": run.precision.name,
        "world_size": run.world,
    }
