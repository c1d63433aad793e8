"""One rank's training run: settings checked, data read, model and optimiser built, the
checkpoint restored or saved, and the epoch machinery (sampler, loader or feature cache, DDP).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from trainer.config import QUERY_MODES, ClipConfig, TrainConfig, val_metric_names
from trainer.data.dataset import TripletDataset
from trainer.data.meta import InputsFormatError, InputsMeta, inputs_digest, read_meta
from trainer.data.sampler import EpochBatchSampler
from trainer.data.sources import ImageMaker
from trainer.data.train_set import SPILL_DIR, load_train_set
from trainer.eval.split import EvalSplit, load_eval_split, raw_split
from trainer.models.clip import compile_blocks, set_grad_checkpointing
from trainer.models.fusion import DQUModel, fusion_method
from trainer.models.saved import build_model
from trainer.runtime import (
    Precision,
    is_main_process,
    rank,
    resolve_precision,
    rng_state,
    seed_everything,
    set_rng_state,
    world_size,
)
from trainer.train import distributed
from trainer.train.checkpoint import load_state, save_state
from trainer.train.epoch import FeatureCache, build_cache
from trainer.train.optim import build_optimizer, make_scaler
from trainer.train.selection import Captions, Subsets, ValScoring, val_scoring

CHECKPOINT_FILE = Path("checkpoint") / "state.pt"  # the resumable state, in the run folder
VAL_KS = (1, 5, 10, 50)  # R@K logged every epoch, whatever train.val_metric sums


class TrainConfigError(ValueError):
    """Settings that cannot train (bad mode, metric name, sizes)."""


@dataclass
class RunProgress:
    """Everything the loop carries from one epoch to the next (saved in the checkpoint)."""

    next_epoch: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def progress_from(saved: dict) -> RunProgress:
    """Progress read from a checkpoint, without the times older checkpoints carried."""
    known = {f.name for f in fields(RunProgress)}
    progress = RunProgress(**{k: v for k, v in saved.items() if k in known})
    progress.history = [{k: v for k, v in record.items() if k != "epoch_time_s"}
                        for record in progress.history]
    return progress


def check_settings(train_cfg: TrainConfig, mode: str, val_subsets: Subsets | None,
              val_captions: Captions | None) -> ValScoring:
    """Check settings early; return how validation scores (cut-offs, protocol data)."""
    if mode not in QUERY_MODES:
        raise TrainConfigError(f"unknown query mode {mode!r}; use one of {QUERY_MODES}")
    if train_cfg.epochs < 1 or train_cfg.batch_size < 1:
        raise TrainConfigError("train epochs and batch_size must be >= 1")
    if not 0.0 <= train_cfg.dropout < 1.0:
        raise TrainConfigError(f"dropout must be in [0, 1), got {train_cfg.dropout}")
    has_head = fusion_method(mode).build_head(1, 0.0) is not None
    if train_cfg.freeze_encoders and not train_cfg.learn_logit_scale and not has_head:
        raise TrainConfigError(f"mode {mode!r} has no fusion head: with freeze_encoders true and "
                               "learn_logit_scale false nothing would train; set one of them "
                               "the other way")
    try:
        return val_scoring(val_metric_names(train_cfg.val_metric), VAL_KS,
                           train_cfg.val_hit_rule, val_subsets, val_captions)
    except ValueError as err:
        raise TrainConfigError(str(err)) from None


def check_meta(meta: InputsMeta, clip_cfg: ClipConfig, inputs_dir: Path) -> None:
    """Refuse shards made for another backbone (wrong resolution / tokenizer)."""
    if meta.model != clip_cfg.model:
        raise InputsFormatError(
            f"{inputs_dir} was built for model {meta.model!r} but clip.model is "
            f"{clip_cfg.model!r}; rerun the `inputs` stage for this backbone"
        )


def _fingerprint(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
                 meta: InputsMeta, inputs_dir: Path) -> str:
    """Settings that must match for a checkpoint to be resumed (runtime-only ones excluded)."""
    runtime_only = ("device", "num_workers", "compile", "pixels_in_memory_gib")
    train = {k: v for k, v in asdict(train_cfg).items() if k not in runtime_only}
    # a default adds no key, so checkpoints made before the field existed still resume
    if train["epoch_sampling"] == "all":
        del train["epoch_sampling"]
    if train["learn_logit_scale"]:
        del train["learn_logit_scale"]
    inputs = asdict(meta)
    if not inputs["train_sources"]:
        del inputs["train_sources"]
    # The data digest stops a persisted checkpoint from resuming on different inputs, the
    # weights digest from resuming after the start checkpoint (e.g. the pretrain stage's) changed.
    return json.dumps({"clip": asdict(clip_cfg), "train": train, "mode": mode, "seed": seed,
                       "inputs": inputs, "data": inputs_digest(inputs_dir),
                       **_weights_digest(clip_cfg)}, sort_keys=True)


def _weights_digest(clip_cfg: ClipConfig) -> dict[str, str]:
    """{"weights": sha256} of a local start checkpoint; nothing for a tag or random init."""
    path = Path(clip_cfg.pretrained) if clip_cfg.pretrained else None
    if path is None or not path.is_file():
        return {}
    return {"weights": hashlib.sha256(path.read_bytes()).hexdigest()}


def say(message: str) -> None:
    """Print progress from rank 0 only, so N ranks do not print N copies."""
    if is_main_process():
        print(message, flush=True)


def local_batch_size(batch_size: int, world: int) -> int:
    """Per-rank share of the global batch (train.batch_size is global, as on one GPU)."""
    if batch_size % world:
        raise TrainConfigError(
            f"train.batch_size {batch_size} is not divisible by the {world} training processes; "
            f"use a multiple of {world} or another torchrun --nproc_per_node"
        )
    return batch_size // world


@dataclass
class Run:
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
    progress: RunProgress = field(default_factory=RunProgress)
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
class Steps:
    """How this rank runs an epoch: its batch sampler, and cached features or a loader."""

    sampler: EpochBatchSampler
    loader: DataLoader
    cache: FeatureCache | None = None
    forward: nn.Module | None = None  # DDP wrapper for end-to-end training under torchrun
    sync_grads: nn.Module | None = None  # module whose gradients cached training averages


def setup(clip_cfg: ClipConfig, train_cfg: TrainConfig, mode: str, seed: int,
           inputs_dir: Path, out_dir: Path, device: torch.device, scoring: ValScoring,
           image_maker: ImageMaker | None = None) -> Run:
    """Seed, read the shards and build model, optimiser and scaler (nothing resumed yet)."""
    world, main = world_size(), is_main_process()
    local_batch_size(train_cfg.batch_size, world)  # refuse an indivisible batch before any work
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(train_cfg.amp, device)
    seed_everything(seed, train_cfg.deterministic)
    meta, dataset, val_data = _load_data(clip_cfg, train_cfg, inputs_dir, out_dir,
                                         fusion_method(mode).raw_inputs, image_maker)
    model = build_model(clip_cfg, mode, train_cfg.dropout, train_cfg.logit_scale_init, device,
                        learn_logit_scale=train_cfg.learn_logit_scale)
    if train_cfg.grad_checkpointing:
        set_grad_checkpointing(model.clip)
    if train_cfg.freeze_encoders:
        model.clip.requires_grad_(False)
    if train_cfg.compile:
        compile_blocks(model.clip)
    return Run(
        clip_cfg=clip_cfg, train_cfg=train_cfg, mode=mode, seed=seed, inputs_dir=inputs_dir,
        out_dir=out_dir, device=device, scoring=scoring, precision=precision, meta=meta,
        dataset=dataset, val_data=val_data, model=model,
        optimizer=build_optimizer(model, train_cfg, device),
        scaler=make_scaler(precision, device),
        fingerprint=_fingerprint(clip_cfg, train_cfg, mode, seed, meta, inputs_dir),
        world=world, main=main,
    )


def _load_data(clip_cfg: ClipConfig, train_cfg: TrainConfig, inputs_dir: Path, out_dir: Path,
               raw_inputs: bool, image_maker: ImageMaker | None
               ) -> tuple[InputsMeta, TripletDataset, EvalSplit | None]:
    """Input spec, train triplets and the val split (None when it has no queries).

    `raw_inputs`: the queries are the raw modification text and reference image
    (trainer.data.raw) instead of the unified queries; `image_maker` makes the train images
    of inputs that store their files (trainer.data.sources).
    """
    meta = read_meta(inputs_dir)
    check_meta(meta, clip_cfg, inputs_dir)
    dataset = load_train_set(inputs_dir, meta, raw_inputs, train_cfg.pixels_in_memory_gib,
                             spill_dir(out_dir), image_maker)
    val_data = load_eval_split(inputs_dir, "val")
    if not len(val_data.queries):
        return meta, dataset, None
    return meta, dataset, raw_split(val_data, inputs_dir) if raw_inputs else val_data


def spill_dir(out_dir: Path) -> Path:
    """Where this rank unpacks training pixels that exceed the memory budget."""
    return out_dir / SPILL_DIR / f"rank{rank()}"


def restore(run: Run) -> None:
    """Load the checkpoint into `run` when there is one made with the same settings."""
    if not run.checkpoint_path.is_file():
        return
    state = load_state(run.checkpoint_path)
    if state["fingerprint"] != run.fingerprint:
        say(f"[train {run.mode}] {run.checkpoint_path} was made with other settings; "
             "starting from scratch")
        return
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    run.progress = progress_from(state["progress"])
    run.best_head = state.get("best_head")
    set_rng_state(state["rng"])
    say(f"[train {run.mode}] resuming after epoch {run.progress.next_epoch}")


def build_steps(run: Run) -> Steps:
    """Sampler, feature cache (frozen encoders) or loader, and the DDP wiring for this rank."""
    train_cfg, world = run.train_cfg, run.world
    # Each rank takes a disjoint slice of the same (seed, epoch) permutation, so the N local
    # batches of a step together are exactly the single-process global batch.
    # one_per_reference: every epoch one of each reference's triplets, the same on every rank
    # (drawn from (seed, epoch)); the cached path indexes its features by these rows as well.
    groups = (run.dataset.queries.reference_ids
              if train_cfg.epoch_sampling == "one_per_reference" else None)
    sampler = EpochBatchSampler(len(run.dataset), local_batch_size(train_cfg.batch_size, world),
                                seed=run.seed, shuffle=True, rank=rank(),
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
    return Steps(sampler=sampler, loader=loader, cache=cache, forward=forward,
                  sync_grads=sync_grads)


def save_checkpoint(run: Run) -> None:
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
