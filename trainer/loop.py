"""Training loop: epochs, validation, early stopping, checkpoints / resume, DVCLive logging."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from trainer import distributed
from trainer.checkpoint import atomic_write_text, load_state, save_model_weights, save_state
from trainer.config import QUERY_MODES, ClipConfig, TrainConfig
from trainer.data import (
    EpochBatchSampler,
    ImageStore,
    InputsFormatError,
    InputsMeta,
    TripletDataset,
    inputs_digest,
    load_queries,
    read_meta,
    to_model_pixels,
)
from trainer.encoders import compile_blocks, load_clip, set_grad_checkpointing
from trainer.evaluate import (
    EvalSplit,
    embed_gallery,
    embed_images,
    embed_query_parts,
    evaluate,
    fuse_queries,
    load_eval_split,
    rank_queries,
)
from trainer.fusion import DQUModel
from trainer.live_log import EpochLogger
from trainer.loss import info_nce_loss
from trainer.runtime import (
    Precision,
    autocast,
    resolve_device,
    resolve_precision,
    seed_everything,
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
    """Outcome of one training run; best_epoch is 1-based."""

    out_dir: Path
    model_path: Path
    epochs_run: int
    best_epoch: int
    best_metric: float
    selection: str
    stopped_early: bool
    wall_time_s: float
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Progress:
    """Everything the loop carries from one epoch to the next (saved in the checkpoint)."""

    next_epoch: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    wall_time_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _FeatureCache:
    """Frozen-encoder features: train query parts and targets, val query parts and gallery."""

    text: torch.Tensor | None
    visual: torch.Tensor | None
    target: torch.Tensor
    val_text: torch.Tensor | None = None
    val_visual: torch.Tensor | None = None
    val_gallery: torch.Tensor | None = None


def _metric_k(val_metric: str) -> int:
    match = re.fullmatch(r"R@(\d+)", val_metric)
    if match is None or int(match[1]) < 1:
        raise TrainConfigError(f"val_metric {val_metric!r} must look like 'R@10'")
    return int(match[1])


def _validate(train_cfg: TrainConfig, mode: str) -> tuple[int, ...]:
    """Check settings early; return the recall cut-offs logged on val."""
    if mode not in QUERY_MODES:
        raise TrainConfigError(f"unknown query mode {mode!r}; use one of {QUERY_MODES}")
    if train_cfg.epochs < 1 or train_cfg.batch_size < 1:
        raise TrainConfigError("train epochs and batch_size must be >= 1")
    if not 0.0 <= train_cfg.dropout < 1.0:
        raise TrainConfigError(f"dropout must be in [0, 1), got {train_cfg.dropout}")
    return tuple(sorted({*VAL_KS, _metric_k(train_cfg.val_metric)}))


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
    # The data digest stops a persisted checkpoint from resuming on different inputs.
    return json.dumps({"clip": asdict(clip_cfg), "train": train, "mode": mode, "seed": seed,
                       "inputs": asdict(meta), "data": inputs_digest(inputs_dir)},
                      sort_keys=True)


def _lr_factor(train_cfg: TrainConfig, epoch: int) -> float:
    return train_cfg.lr_decay_factor if epoch >= train_cfg.lr_decay_epoch else 1.0


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


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _batch_to_device(batch: dict[str, torch.Tensor], meta: InputsMeta, device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tokens = batch["tokens"].to(device, non_blocking=True)
    visual = to_model_pixels(batch["visual"].to(device, non_blocking=True), meta.mean, meta.std)
    target = to_model_pixels(batch["target"].to(device, non_blocking=True), meta.mean, meta.std)
    return tokens, visual, target


def _optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, sync_grads: nn.Module | None = None) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if sync_grads is not None:
        distributed.average_gradients(sync_grads.parameters())
    scaler.step(optimizer)
    scaler.update()


def _train_epoch_end_to_end(model: DQUModel, loader: DataLoader, meta: InputsMeta,
                            optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                            device: torch.device, precision: Precision,
                            forward: nn.Module | None = None) -> float:
    """One epoch through encoders and head; returns the mean batch loss.

    `forward` is the DistributedDataParallel wrapper of `model` under torchrun (its forward
    all-reduces the gradients); the loss still reads the logit scale from `model`.
    """
    model.train()
    forward = forward or model
    total, steps = torch.zeros((), device=device), 0
    for batch in loader:
        tokens, visual, target = _batch_to_device(batch, meta, device)
        with autocast(device, precision):
            query_features, target_features = forward(tokens, visual, target)
            loss = info_nce_loss(query_features, target_features, model.logit_scale)
        _optimizer_step(loss, optimizer, scaler)
        total += loss.detach().float()
        steps += 1
    return float(total.item()) / max(steps, 1)


def _train_epoch_cached(model: DQUModel, cache: _FeatureCache, sampler: EpochBatchSampler,
                        optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                        device: torch.device, sync_grads: nn.Module | None = None) -> float:
    """One epoch of the head alone on cached encoder features; returns the mean batch loss."""
    model.train()
    model.clip.eval()
    total, steps = torch.zeros((), device=device), 0
    for rows in sampler:
        index = torch.as_tensor(rows, device=device)
        text = None if cache.text is None else cache.text[index]
        visual = None if cache.visual is None else cache.visual[index]
        query_features, _ = model.fuse(text, visual)
        loss = info_nce_loss(query_features, cache.target[index], model.logit_scale)
        _optimizer_step(loss, optimizer, scaler, sync_grads)
        total += loss.detach().float()
        steps += 1
    return float(total.item()) / max(steps, 1)


def _build_cache(model: DQUModel, dataset: TripletDataset, meta: InputsMeta,
                 val_data: EvalSplit | None, batch_size: int, device: torch.device,
                 precision: Precision) -> _FeatureCache:
    """Encode every train query, train target and val query / gallery image exactly once."""
    text, visual = embed_query_parts(model, dataset.queries, meta, batch_size, device, precision)
    images = embed_images(model, dataset.images.pixels, meta, batch_size, device, precision)
    cache = _FeatureCache(text=text, visual=visual,
                          target=images[torch.from_numpy(dataset.target_rows).to(device)])
    if val_data is not None:
        cache.val_text, cache.val_visual = embed_query_parts(
            model, val_data.queries, meta, batch_size, device, precision)
        cache.val_gallery = embed_gallery(model, val_data, batch_size, device, precision)
    return cache


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


def train(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
          inputs_dir: str | Path, out_dir: str | Path, resume: bool = True) -> TrainResult:
    """Train one DQU model (mode dqu / text / visual) on the input shards; see module doc.

    Under `torchrun --nproc_per_node=N` each process trains on its slice of every global
    batch (DDP); rank 0 alone logs, evaluates and writes checkpoints and weights.
    """
    val_ks = _validate(train_cfg, mode)
    with distributed.session(resolve_device(train_cfg.device)) as device:
        return _train(clip_cfg, train_cfg, mode, seed, Path(inputs_dir), Path(out_dir), resume,
                      device, val_ks)


def _train(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
           inputs_dir: Path, out_dir: Path, resume: bool, device: torch.device,
           val_ks: tuple[int, ...]) -> TrainResult:
    """Body of `train` on this rank's device, inside the process group if there is one."""
    world, main = distributed.world_size(), distributed.is_main_process()
    local_batch = _local_batch_size(train_cfg.batch_size, world)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(train_cfg.amp, device)
    seed_everything(seed, train_cfg.deterministic)

    meta = read_meta(inputs_dir)
    _check_meta(meta, clip_cfg, inputs_dir)
    train_queries = load_queries(inputs_dir, "train", meta)
    if len(train_queries) == 0:
        raise InputsFormatError(f"{inputs_dir} has no train queries")
    dataset = TripletDataset(train_queries, ImageStore(inputs_dir, train_queries.target_ids, meta))
    val_data = load_eval_split(inputs_dir, "val")
    if len(val_data.queries) == 0:
        val_data = None
    selection = f"val {train_cfg.val_metric}" if val_data is not None else "train loss"

    model = build_model(clip_cfg, mode, train_cfg.dropout, train_cfg.logit_scale_init, device)
    if train_cfg.grad_checkpointing:
        set_grad_checkpointing(model.clip)
    if train_cfg.freeze_encoders:
        model.clip.requires_grad_(False)
    if train_cfg.compile:
        compile_blocks(model.clip)
    optimizer = build_optimizer(model, train_cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)

    progress = _Progress()
    # Frozen encoders: only the head moves, so the best epoch's head (kilobytes) is kept here
    # and the full model is written once after training instead of after every improvement.
    best_head: dict[str, torch.Tensor] | None = None
    fingerprint = _fingerprint(clip_cfg, train_cfg, mode, seed, meta, inputs_dir)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if resume and checkpoint_path.is_file():
        state = load_state(checkpoint_path)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            progress = _Progress(**state["progress"])
            best_head = state.get("best_head")
            _set_rng_state(state["rng"])
            _say(f"[train {mode}] resuming after epoch {progress.next_epoch}")
        else:
            _say(f"[train {mode}] {checkpoint_path} was made with other settings; "
                 "starting from scratch")
    session_start = time.perf_counter()
    wall_before = progress.wall_time_s

    logger = None
    if main:
        shutil.rmtree(out_dir / LIVE_DIR, ignore_errors=True)
        logger = EpochLogger(out_dir / LIVE_DIR)
        logger.replay(progress.history)

    eval_batch = max(train_cfg.batch_size, 64)
    # Each rank takes a disjoint slice of the same (seed, epoch) permutation, so the N local
    # batches of a step together are exactly the single-process global batch.
    sampler = EpochBatchSampler(len(dataset), local_batch, seed=seed, shuffle=True,
                                drop_last=len(dataset) > train_cfg.batch_size,
                                rank=distributed.rank(), world_size=world)
    cache = None
    if train_cfg.freeze_encoders and not progress.stopped_early \
            and progress.next_epoch < train_cfg.epochs:
        # Only rank 0 validates, so only it needs the val features.
        cache = _build_cache(model, dataset, meta, val_data if main else None, eval_batch,
                             device, precision)
    forward, sync_grads = None, None
    if world > 1 and cache is not None:
        # Cached head training never calls forward(), so DDP's hooks would not fire:
        # start from rank 0's weights and average the head's gradients by hand.
        distributed.broadcast_module(model)
        sync_grads = model
    elif world > 1:
        # static_graph: the towers a mode ignores (and CLIP's own logit scale) get no
        # gradient, and the graph is the same every step.
        forward = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            static_graph=True)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None,
                        num_workers=train_cfg.num_workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(seed),
                        persistent_workers=train_cfg.num_workers > 0)

    while progress.next_epoch < train_cfg.epochs and not progress.stopped_early:
        epoch = progress.next_epoch
        epoch_start = time.perf_counter()
        factor = _lr_factor(train_cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        sampler.set_epoch(epoch)
        if world > 1:
            distributed.seed_for_rank(seed, epoch)
        if cache is not None:
            loss = _train_epoch_cached(model, cache, sampler, optimizer, scaler, device,
                                       sync_grads)
        else:
            loss = _train_epoch_end_to_end(model, loader, meta, optimizer, scaler, device,
                                           precision, forward)
        loss = distributed.mean_over_ranks(loss, device)
        if not math.isfinite(loss):
            raise FloatingPointError(f"train loss became {loss} in epoch {epoch + 1}; "
                                     "lower the learning rates or turn amp off")
        record = {"epoch": epoch + 1, "train/loss": loss}
        for group in optimizer.param_groups:
            record[f"lr/{group['name']}"] = group["lr"]
        if val_data is not None:
            value, higher = None, True
            if main:
                if cache is not None:
                    queries = fuse_queries(model, cache.val_text, cache.val_visual, eval_batch)
                    # top_n 0: validation needs recall only, not the top gallery ids.
                    result = rank_queries(queries, cache.val_gallery, val_data, val_ks, 0,
                                          eval_batch)
                else:
                    result = evaluate(model, inputs_dir, "val", val_ks, eval_batch, device,
                                      amp=train_cfg.amp, top_n=0, data=val_data)
                record.update({f"val/{k}": v for k, v in result.metrics.items()})
                value = result.metrics[train_cfg.val_metric]
            # Every rank takes the same early-stopping decision from rank 0's number.
            value = distributed.broadcast_from_main(value)
        else:
            value, higher = loss, False
        tolerance = train_cfg.early_stop_tolerance if higher else 0.0
        if _is_improvement(value, progress.best_metric, higher, tolerance):
            progress.best_metric, progress.best_epoch = value, epoch + 1
            progress.epochs_without_improvement = 0
            if main and cache is not None:
                best_head = _head_state(model)
            elif main:
                save_model_weights(model, out_dir / MODEL_FILE)
        else:
            progress.epochs_without_improvement += 1
        patience = train_cfg.early_stop_patience
        progress.stopped_early = 0 < patience <= progress.epochs_without_improvement
        record["epoch_time_s"] = time.perf_counter() - epoch_start
        progress.history.append(record)
        progress.next_epoch = epoch + 1
        progress.wall_time_s = wall_before + time.perf_counter() - session_start
        if main:
            save_state(checkpoint_path, {
                "fingerprint": fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "progress": asdict(progress),
                "rng": _rng_state(),
                "best_head": best_head,
            })
            logger.log(record)
        shown = f"{selection} {value:.4f}" if val_data is None else f"{selection} {value:.2f}"
        _say(f"[train {mode}] epoch {epoch + 1}/{train_cfg.epochs} loss {loss:.4f} {shown} "
             f"({record['epoch_time_s']:.1f}s)")

    if logger is not None:
        logger.close()
    if main and best_head is not None:
        save_model_weights(model, out_dir / MODEL_FILE, overrides=best_head)
    result = TrainResult(
        out_dir=out_dir,
        model_path=out_dir / MODEL_FILE,
        epochs_run=progress.next_epoch,
        best_epoch=progress.best_epoch,
        best_metric=float(progress.best_metric),
        selection=selection,
        stopped_early=progress.stopped_early,
        wall_time_s=wall_before + time.perf_counter() - session_start,
        history=progress.history,
    )
    summary = {
        "mode": mode,
        "seed": seed,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "selection": selection,
        "stopped_early": result.stopped_early,
        "wall_time_s": round(result.wall_time_s, 3),
        "device": str(device),
        "precision": precision.name,
        "world_size": world,
    }
    if main:
        atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    # Other ranks leave only once rank 0 has written everything.
    distributed.barrier()
    return result


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
