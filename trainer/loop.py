"""Training loop: epochs, validation, early stopping, checkpoints / resume, DVCLive logging."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from trainer import distributed
from trainer.atomic import write_text
from trainer.checkpoint import load_state, save_model_weights, save_state
from trainer.config import QUERY_MODES, ClipConfig, TrainConfig, val_metric_names
from trainer.data import (
    EpochBatchSampler,
    ImageStore,
    InputsFormatError,
    InputsMeta,
    TripletDataset,
    inputs_digest,
    load_queries,
    read_meta,
)
from trainer.encoders import compile_blocks, load_clip, set_grad_checkpointing
from trainer.epoch import FeatureCache, build_cache, train_epoch_cached, train_epoch_end_to_end
from trainer.evaluate import EvalSplit, encode_split, fuse_queries, load_eval_split
from trainer.fusion import DQUModel
from trainer.live_log import EpochLogger
from trainer.progress import Progress
from trainer.runtime import (
    Precision,
    resolve_device,
    resolve_precision,
    rng_state,
    seed_everything,
    set_rng_state,
)
from trainer.selection import (
    Captions,
    Subsets,
    ValScoring,
    score_val,
    selection_score,
    val_scoring,
)

CHECKPOINT_FILE = Path("checkpoint") / "state.pt"
MODEL_FILE = "model.safetensors"
SUMMARY_FILE = "train_summary.json"
LIVE_DIR = "dvclive"
VAL_KS = (1, 5, 10, 50)


class TrainConfigError(ValueError):
    """Settings that cannot train (bad mode, metric name, sizes)."""


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


@dataclass
class _Progress:
    """Everything the loop carries from one epoch to the next (saved in the checkpoint)."""

    next_epoch: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def _progress_from(saved: dict) -> _Progress:
    """Progress read from a checkpoint, without the times older checkpoints carried."""
    known = {f.name for f in fields(_Progress)}
    progress = _Progress(**{k: v for k, v in saved.items() if k in known})
    progress.history = [{k: v for k, v in record.items() if k != "epoch_time_s"}
                        for record in progress.history]
    return progress


def _validate(train_cfg: TrainConfig, mode: str, val_subsets: Subsets | None,
              val_captions: Captions | None) -> ValScoring:
    """Check settings early; return how validation scores (cut-offs, protocol data)."""
    if mode not in QUERY_MODES:
        raise TrainConfigError(f"unknown query mode {mode!r}; use one of {QUERY_MODES}")
    if train_cfg.epochs < 1 or train_cfg.batch_size < 1:
        raise TrainConfigError("train epochs and batch_size must be >= 1")
    if not 0.0 <= train_cfg.dropout < 1.0:
        raise TrainConfigError(f"dropout must be in [0, 1), got {train_cfg.dropout}")
    try:
        return val_scoring(val_metric_names(train_cfg.val_metric), VAL_KS,
                           train_cfg.val_hit_rule, val_subsets, val_captions)
    except ValueError as err:
        raise TrainConfigError(str(err)) from None


def _check_meta(meta: InputsMeta, clip_cfg: ClipConfig, inputs_dir: Path) -> None:
    """Refuse shards made for another backbone (wrong resolution / tokenizer)."""
    if meta.model != clip_cfg.model:
        raise InputsFormatError(
            f"{inputs_dir} was built for model {meta.model!r} but clip.model is "
            f"{clip_cfg.model!r}; rerun the `inputs` stage for this backbone"
        )


def _fingerprint(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
                 meta: InputsMeta, inputs_dir: Path) -> str:
    """Settings that must match for a checkpoint to be resumed (runtime-only ones excluded)."""
    runtime_only = ("device", "num_workers", "compile")
    train = {k: v for k, v in asdict(train_cfg).items() if k not in runtime_only}
    if train["epoch_sampling"] == "all":
        # the default adds no key, so checkpoints made before the field existed still resume
        del train["epoch_sampling"]
    # The data digest stops a persisted checkpoint from resuming on different inputs, the
    # weights digest from resuming after the start checkpoint (e.g. the pretrain stage's) changed.
    return json.dumps({"clip": asdict(clip_cfg), "train": train, "mode": mode, "seed": seed,
                       "inputs": asdict(meta), "data": inputs_digest(inputs_dir),
                       **_weights_digest(clip_cfg)}, sort_keys=True)


def _weights_digest(clip_cfg: ClipConfig) -> dict[str, str]:
    """{"weights": sha256} of a local start checkpoint; nothing for a tag or random init."""
    path = Path(clip_cfg.pretrained) if clip_cfg.pretrained else None
    if path is None or not path.is_file():
        return {}
    return {"weights": hashlib.sha256(path.read_bytes()).hexdigest()}


def _lr_factor(train_cfg: TrainConfig, epoch: int) -> float:
    """LR multiplier of 0-based `epoch`: decayed from the 1-based epoch lr_decay_epoch on."""
    return train_cfg.lr_decay_factor if epoch + 1 >= train_cfg.lr_decay_epoch else 1.0


def make_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler: active for fp16 autocast (the official GradScaler), else a no-op."""
    return torch.amp.GradScaler(device.type, enabled=precision.use_scaler)


def should_stop(epochs_without_improvement: int, patience: int) -> bool:
    """Official tolerance counter: stop if the next epoch is the patience-th since the best."""
    # The official loop would train that epoch without validating it, so it changes nothing.
    return 0 < patience <= epochs_without_improvement + 1


def build_optimizer(model: DQUModel, train_cfg: TrainConfig,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW over the head group (lr) and, unless frozen, the CLIP group (clip_lr)."""
    groups = [{"params": model.head_parameters(), "lr": train_cfg.lr, "base_lr": train_cfg.lr,
               "name": "head"}]
    if not train_cfg.freeze_encoders:
        groups.append({"params": list(model.clip.parameters()), "lr": train_cfg.clip_lr,
                       "base_lr": train_cfg.clip_lr, "name": "clip"})
    # The fused kernel updates all parameters in a few launches instead of several per tensor.
    return torch.optim.AdamW(groups, weight_decay=train_cfg.weight_decay,
                             fused=device.type == "cuda")


def _head_state(model: DQUModel) -> dict[str, torch.Tensor]:
    """A copy of every state entry outside the (frozen) CLIP: fusion head and logit scale."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()
            if not name.startswith("clip.")}


def _is_improvement(value: float, best: float | None, higher_is_better: bool,
                    tolerance: float) -> bool:
    if best is None:
        return True
    return value > best + tolerance if higher_is_better else value < best - tolerance


def build_model(clip_cfg: ClipConfig, mode: str, dropout: float, logit_scale_init: float,
                device: torch.device) -> DQUModel:
    """CLIP from the gateway wrapped in the DQU fusion model, on `device`."""
    bundle = load_clip(clip_cfg, device)
    return DQUModel(bundle.model, bundle.embed_dim, mode, dropout, logit_scale_init).to(device)


def _say(message: str) -> None:
    """Print progress from rank 0 only, so N ranks do not print N copies."""
    if distributed.is_main_process():
        print(message, flush=True)


def _local_batch_size(batch_size: int, world: int) -> int:
    """Per-rank share of the global batch (train.batch_size is global, as on one GPU)."""
    if batch_size % world:
        raise TrainConfigError(
            f"train.batch_size {batch_size} is not divisible by the {world} training processes; "
            f"use a multiple of {world} or another torchrun --nproc_per_node"
        )
    return batch_size // world


@dataclass
class _Run:
    """One rank's training run: settings, data, model, optimiser and the epoch-to-epoch state."""

    clip_cfg: ClipConfig
    train_cfg: TrainConfig
    mode: str
    seed: int
    inputs_dir: Path
    out_dir: Path
    device: torch.device
    scoring: ValScoring
    precision: Precision
    meta: InputsMeta
    dataset: TripletDataset
    val_data: EvalSplit | None
    model: DQUModel
    optimizer: torch.optim.AdamW
    scaler: torch.amp.GradScaler
    fingerprint: str
    world: int
    main: bool  # rank 0: logs, validates and writes every file
    progress: _Progress = field(default_factory=_Progress)
    # Frozen encoders: only the head moves, so the best epoch's head (kilobytes) is kept here
    # and the full model is written once after training instead of after every improvement.
    best_head: dict[str, torch.Tensor] | None = None

    @property
    def selection(self) -> str:
        """What picks the best epoch: the val metric, or the train loss without val queries."""
        if self.val_data is None:
            return "train loss"
        return "val " + "+".join(val_metric_names(self.train_cfg.val_metric))

    @property
    def eval_batch(self) -> int:
        """Batch size for embedding val queries and gallery."""
        return max(self.train_cfg.batch_size, 64)

    @property
    def checkpoint_path(self) -> Path:
        """Where the resumable training state lives."""
        return self.out_dir / CHECKPOINT_FILE


@dataclass
class _Steps:
    """How this rank runs an epoch: its batch sampler, and cached features or a loader."""

    sampler: EpochBatchSampler
    loader: DataLoader
    cache: FeatureCache | None = None
    forward: nn.Module | None = None  # DDP wrapper for end-to-end training under torchrun
    sync_grads: nn.Module | None = None  # module whose gradients cached training averages


def train(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
          inputs_dir: str | Path, out_dir: str | Path, resume: bool = True,
          val_subsets: Subsets | None = None, val_captions: Captions | None = None
          ) -> TrainResult:
    """Train one DQU model (mode dqu / text / visual) on the input shards; see module doc.

    `seed` seeds initialisation, shuffling and dropout (the pipeline passes train.seed).
    `val_subsets` (val pair id -> CIRR subset members) lets val_metric name Rsubset@K;
    `val_captions` (image id -> caption) is what val_hit_rule caption compares.
    Under `torchrun --nproc_per_node=N` each process trains on its slice of every global
    batch (DDP); rank 0 alone logs, evaluates and writes checkpoints and weights.
    """
    scoring = _validate(train_cfg, mode, val_subsets, val_captions)
    with distributed.session(resolve_device(train_cfg.device)) as device:
        return _train(clip_cfg, train_cfg, mode, seed, Path(inputs_dir), Path(out_dir), resume,
                      device, scoring)


def _train(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
           inputs_dir: Path, out_dir: Path, resume: bool, device: torch.device,
           scoring: ValScoring) -> TrainResult:
    """Body of `train` on this rank's device, inside the process group if there is one."""
    run = _setup(clip_cfg, train_cfg, mode, seed, inputs_dir, out_dir, device, scoring)
    if resume:
        _restore(run)
    session_start = time.perf_counter()
    logger = _open_logger(run)
    steps = _build_steps(run)
    epoch_times = []
    while run.progress.next_epoch < train_cfg.epochs and not run.progress.stopped_early:
        epoch_start = time.perf_counter()
        record, value = _run_epoch(run, steps)
        epoch_times.append(time.perf_counter() - epoch_start)
        if run.main:
            _save_checkpoint(run)
            logger.log(record)
        shown = f"{value:.4f}" if run.val_data is None else f"{value:.2f}"
        _say(f"[train {mode}] epoch {record['epoch']}/{train_cfg.epochs} loss "
             f"{record['train/loss']:.4f} {run.selection} {shown} ({epoch_times[-1]:.1f}s)")
    if logger is not None:
        logger.close()
    return _finish(run, time.perf_counter() - session_start, epoch_times)


def _setup(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
           inputs_dir: Path, out_dir: Path, device: torch.device, scoring: ValScoring) -> _Run:
    """Seed, read the shards and build model, optimiser and scaler (nothing resumed yet)."""
    world, main = distributed.world_size(), distributed.is_main_process()
    _local_batch_size(train_cfg.batch_size, world)  # refuse an indivisible batch before any work
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(train_cfg.amp, device)
    seed_everything(seed, train_cfg.deterministic)
    meta, dataset, val_data = _load_data(clip_cfg, inputs_dir)
    model = build_model(clip_cfg, mode, train_cfg.dropout, train_cfg.logit_scale_init, device)
    if train_cfg.grad_checkpointing:
        set_grad_checkpointing(model.clip)
    if train_cfg.freeze_encoders:
        model.clip.requires_grad_(False)
    if train_cfg.compile:
        compile_blocks(model.clip)
    return _Run(
        clip_cfg=clip_cfg, train_cfg=train_cfg, mode=mode, seed=seed, inputs_dir=inputs_dir,
        out_dir=out_dir, device=device, scoring=scoring, precision=precision, meta=meta,
        dataset=dataset, val_data=val_data, model=model,
        optimizer=build_optimizer(model, train_cfg, device),
        scaler=make_scaler(precision, device),
        fingerprint=_fingerprint(clip_cfg, train_cfg, mode, seed, meta, inputs_dir),
        world=world, main=main,
    )


def _load_data(clip_cfg: ClipConfig, inputs_dir: Path
               ) -> tuple[InputsMeta, TripletDataset, EvalSplit | None]:
    """Input spec, train triplets and the val split (None when it has no queries)."""
    meta = read_meta(inputs_dir)
    _check_meta(meta, clip_cfg, inputs_dir)
    train_queries = load_queries(inputs_dir, "train", meta)
    if len(train_queries) == 0:
        raise InputsFormatError(f"{inputs_dir} has no train queries")
    dataset = TripletDataset(train_queries, ImageStore(inputs_dir, train_queries.target_ids, meta))
    val_data = load_eval_split(inputs_dir, "val")
    return meta, dataset, val_data if len(val_data.queries) else None


def _restore(run: _Run) -> None:
    """Load the checkpoint into `run` when there is one made with the same settings."""
    if not run.checkpoint_path.is_file():
        return
    state = load_state(run.checkpoint_path)
    if state["fingerprint"] != run.fingerprint:
        _say(f"[train {run.mode}] {run.checkpoint_path} was made with other settings; "
             "starting from scratch")
        return
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    run.progress = _progress_from(state["progress"])
    run.best_head = state.get("best_head")
    set_rng_state(state["rng"])
    _say(f"[train {run.mode}] resuming after epoch {run.progress.next_epoch}")


def _open_logger(run: _Run) -> EpochLogger | None:
    """Fresh DVCLive logs on rank 0, with the resumed epochs replayed into them."""
    if not run.main:
        return None
    shutil.rmtree(run.out_dir / LIVE_DIR, ignore_errors=True)
    logger = EpochLogger(run.out_dir / LIVE_DIR)
    logger.replay(run.progress.history)
    return logger


def _build_steps(run: _Run) -> _Steps:
    """Sampler, feature cache (frozen encoders) or loader, and the DDP wiring for this rank."""
    train_cfg, world = run.train_cfg, run.world
    # Each rank takes a disjoint slice of the same (seed, epoch) permutation, so the N local
    # batches of a step together are exactly the single-process global batch.
    # one_per_reference: every epoch one of each reference's triplets, the same on every rank
    # (drawn from (seed, epoch)); the cached path indexes its features by these rows as well.
    groups = (run.dataset.queries.reference_ids
              if train_cfg.epoch_sampling == "one_per_reference" else None)
    sampler = EpochBatchSampler(len(run.dataset), _local_batch_size(train_cfg.batch_size, world),
                                seed=run.seed, shuffle=True, rank=distributed.rank(),
                                world_size=world, groups=groups)
    sampler.drop_last = sampler.epoch_size > train_cfg.batch_size
    cache = None
    if train_cfg.freeze_encoders and not run.progress.stopped_early \
            and run.progress.next_epoch < train_cfg.epochs:
        # Only rank 0 validates, so only it needs the val features.
        cache = build_cache(run.model, run.dataset, run.meta,
                             run.val_data if run.main else None, run.eval_batch, run.device,
                             run.precision)
    forward, sync_grads = None, None
    if world > 1 and cache is not None:
        # Cached head training never calls forward(), so DDP's hooks would not fire:
        # start from rank 0's weights and average the head's gradients by hand.
        distributed.broadcast_module(run.model)
        sync_grads = run.model
    elif world > 1:
        # static_graph: the towers a mode ignores (and CLIP's own logit scale) get no
        # gradient, and the graph is the same every step.
        forward = DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            static_graph=True)
    loader = DataLoader(run.dataset, sampler=sampler, batch_size=None,
                        num_workers=train_cfg.num_workers, pin_memory=run.device.type == "cuda",
                        generator=torch.Generator().manual_seed(run.seed),
                        persistent_workers=train_cfg.num_workers > 0)
    return _Steps(sampler=sampler, loader=loader, cache=cache, forward=forward,
                  sync_grads=sync_grads)


def _run_epoch(run: _Run, steps: _Steps) -> tuple[dict[str, float], float]:
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


def _train_one_epoch(run: _Run, steps: _Steps, epoch: int) -> float:
    """One epoch of optimiser steps at this epoch's learning rate; the loss over all ranks."""
    factor = _lr_factor(run.train_cfg, epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    steps.sampler.set_epoch(epoch)
    if run.world > 1:
        distributed.seed_for_rank(run.seed, epoch)
    # Rank 0 alone reports, like _say.
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


def _val_metrics(run: _Run, steps: _Steps) -> dict[str, float]:
    """Val R@K (and Rsubset@K) of the current model, always in fp32 as the official test code."""
    cache, batch = steps.cache, run.eval_batch
    if cache is not None:
        queries = fuse_queries(run.model, cache.val_text, cache.val_visual, batch)
        gallery = cache.val_gallery
    else:
        # amp off: training autocast (fp16 / bf16) must not leak into model selection.
        queries, gallery = encode_split(run.model, run.val_data, batch, run.device, "off")
    return score_val(queries, gallery, run.val_data, run.scoring, batch)


def _validate_epoch(run: _Run, steps: _Steps, record: dict[str, float]) -> float:
    """Val metrics on rank 0 (added to `record`); every rank gets rank 0's selection score."""
    value = None
    if run.main:
        metrics = _val_metrics(run, steps)
        record.update({f"val/{k}": v for k, v in metrics.items()})
        value = selection_score(metrics, val_metric_names(run.train_cfg.val_metric))
    # Every rank takes the same early-stopping decision from rank 0's number.
    return distributed.broadcast_from_main(value)


def _select_best(run: _Run, steps: _Steps, epoch: int, value: float, higher: bool) -> None:
    """Keep the best epoch's weights and count epochs without improvement (early stopping)."""
    progress = run.progress
    tolerance = run.train_cfg.early_stop_tolerance if higher else 0.0
    if _is_improvement(value, progress.best_metric, higher, tolerance):
        progress.best_metric, progress.best_epoch = value, epoch + 1
        progress.epochs_without_improvement = 0
        if run.main and steps.cache is not None:
            run.best_head = _head_state(run.model)
        elif run.main:
            save_model_weights(run.model, run.out_dir / MODEL_FILE)
    else:
        progress.epochs_without_improvement += 1
    more_left = epoch + 1 < run.train_cfg.epochs
    progress.stopped_early = more_left and should_stop(progress.epochs_without_improvement,
                                                       run.train_cfg.early_stop_patience)


def _save_checkpoint(run: _Run) -> None:
    """Everything a killed run needs to resume exactly where this epoch ended (rank 0)."""
    save_state(run.checkpoint_path, {
        "fingerprint": run.fingerprint,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "progress": asdict(run.progress),
        "rng": rng_state(),
        "best_head": run.best_head,
    })


def _finish(run: _Run, wall_time_s: float, epoch_times_s: list[float]) -> TrainResult:
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
    _say(f"[train {run.mode}] {len(epoch_times_s)} epoch(s) in {wall_time_s:.1f}s; best epoch "
         f"{result.best_epoch}/{result.epochs_run}")
    # Other ranks leave only once rank 0 has written everything.
    distributed.barrier()
    return result


def _summary(run: _Run, result: TrainResult) -> dict:
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


def load_trained(clip_cfg: ClipConfig, mode: str, dropout: float, out_dir: str | Path,
                 device: str | torch.device = "cpu") -> DQUModel:
    """Rebuild the model and load the best weights from `out_dir/model.safetensors` (eval mode)."""
    from trainer.checkpoint import load_model_weights

    device = resolve_device(str(device)) if isinstance(device, str) else device
    # Random init is enough: every weight is overwritten, and it avoids fetching a pretrained tag.
    model = build_model(ClipConfig(model=clip_cfg.model, pretrained=None), mode, dropout, 1.0,
                        device)
    load_model_weights(model, Path(out_dir) / MODEL_FILE)
    return model.eval()
