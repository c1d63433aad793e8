"""Typed configs for the trainer library (filled from params.yaml by the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

QueryMode = Literal["dqu", "text", "visual"]
QUERY_MODES: tuple[str, ...] = ("dqu", "text", "visual")


@dataclass(frozen=True)
class ClipConfig:
    """Which open_clip backbone to build and where its weights come from."""

    model: str = "dqu-tiny"  # any open_clip model name, e.g. "ViT-H-14"
    # open_clip tag (e.g. "laion2b_s32b_b79k"), a local checkpoint path, or None = random init
    pretrained: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, stopping and runtime settings of one training run."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-4  # fusion head + logit scale
    clip_lr: float = 1e-6  # CLIP encoders
    weight_decay: float = 1e-2
    lr_decay_epoch: int = 8  # multiply both lrs by lr_decay_factor once, after this many epochs
    lr_decay_factor: float = 0.1
    early_stop_patience: int = 5  # stop after this many epochs without val improvement
    early_stop_tolerance: float = 0.0  # improvement must exceed this (in recall points) to count
    dropout: float = 0.5
    logit_scale_init: float = 10.0
    freeze_encoders: bool = False  # encoder outputs computed once and cached, only head trains
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # auto (bf16 autocast on cuda if supported else fp16+GradScaler; off on cpu) | off | fp16 | bf16
    amp: str = "auto"
    num_workers: int = 0
    deterministic: bool = False
    val_metric: str = "R@10"  # which val recall selects the best epoch / early stopping
    grad_checkpointing: bool = False
    # torch.compile each transformer block: same maths, faster GPU steps (compiling costs ~20 s
    # on a GPU machine, minutes on a small CPU)
    compile: bool = False
