"""Typed configs for the trainer library (filled from params.yaml by the pipeline)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from trainer.checks import above, at_least, between, check_fields, device, one_of, satisfies
from trainer.models.names import is_known_model

QueryMode = Literal["dqu", "text", "visual", "combiner", "sum"]
# DQU, its two single-query ablations, and two feature-level fusion baselines on the raw query
# (trainer.models.fusion says what each fuses)
QUERY_MODES: tuple[str, ...] = ("dqu", "text", "visual", "combiner", "sum")
AMP_MODES: tuple[str, ...] = ("auto", "off", "fp16", "bf16")
# none: train on the stored centre crop; official: open_clip's train RandomResizedCrop
# (trainer.data.augment), drawn afresh each epoch, on the visual query and the target.
AUGMENT_MODES: tuple[str, ...] = ("none", "official")
# all: every training triplet each epoch; one_per_reference: each epoch one triplet per distinct
# reference id, drawn from (seed, epoch), as the official Fashion200K loader draws a fresh target
# per source image every epoch (from the pool prepare.train_pairs_per_image writes).
EPOCH_SAMPLING: tuple[str, ...] = ("all", "one_per_reference")
# Metrics validation can compute: R@K, and CIRR's Rsubset@K when the run is given each val
# query's subset members (trainer.eval.protocols, through trainer.train.selection).
VAL_METRIC_PATTERN = r"(R|Rsubset)@[1-9][0-9]*"


def val_metric_names(val_metric: str | list[str]) -> tuple[str, ...]:
    """The metric names whose sum selects the best epoch (one name or a list)."""
    return (val_metric,) if isinstance(val_metric, str) else tuple(val_metric)


def _valid_val_metric(val_metric: str | list[str]) -> bool:
    names = val_metric_names(val_metric)
    return (len(names) > 0 and len(set(names)) == len(names)
            and all(isinstance(n, str) and re.fullmatch(VAL_METRIC_PATTERN, n) for n in names))


@dataclass(frozen=True)
class ClipConfig:
    """Which open_clip backbone to build and where its weights come from."""

    # any open_clip model name, e.g. "ViT-H-14", or a trainer/models/configs/*.json name
    model: str = field(default="dqu-tiny", metadata=satisfies(
        is_known_model, "a name in trainer/models/configs/ or open_clip.list_models()",
        "is not a known model"))
    # open_clip tag (e.g. "laion2b_s32b_b79k"), a local checkpoint path, or None = random init
    pretrained: str | None = None

    def __post_init__(self) -> None:
        check_fields(self, "clip")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, stopping and runtime settings of one training run."""

    epochs: int = field(default=10, metadata=at_least(1))
    batch_size: int = field(default=16, metadata=at_least(1))
    lr: float = field(default=1e-4, metadata=above(0))  # fusion head + logit scale
    # CLIP encoders; 0 keeps them fixed while still running them (unlike freeze_encoders)
    clip_lr: float = field(default=1e-6, metadata=at_least(0))
    weight_decay: float = field(default=1e-2, metadata=at_least(0))
    # multiply both lrs by lr_decay_factor once: epoch N (1-based) is the first at the lower rate,
    # as the official `(epoch + 1) % 8 == 0` with 0-based epochs (0 or 1: from the start)
    lr_decay_epoch: int = field(default=8, metadata=at_least(0))
    lr_decay_factor: float = field(default=0.1, metadata=between(0, 1, low_open=True))
    # the official tolerance counter: validate while fewer than this many epochs have passed since
    # the best one, i.e. stop after patience - 1 epochs without improvement; 0 never stops early
    early_stop_patience: int = field(default=5, metadata=at_least(0))
    # improvement must exceed this (in recall points, of the val_metric sum) to count
    early_stop_tolerance: float = field(default=0.0, metadata=at_least(0))
    dropout: float = field(default=0.5, metadata=between(0, 1, high_open=True))
    # a plain multiplier of the cosines (not a log-scale): negative would rank backwards
    logit_scale_init: float = field(default=10.0, metadata=above(0))
    # false: the scale stays at logit_scale_init (CLIP4Cir's recipe: false with 100)
    learn_logit_scale: bool = True
    freeze_encoders: bool = False  # encoder outputs computed once and cached, only head trains
    device: str = field(default="auto", metadata=device())  # auto | cpu | cuda | cuda:N | mps
    # auto (bf16 autocast on cuda if supported else fp16+GradScaler; off on cpu) | off | fp16 | bf16
    amp: str = field(default="auto", metadata=one_of(*AMP_MODES))
    num_workers: int = field(default=0, metadata=at_least(0))
    # the train split's pixels are held in memory up to this size, else unpacked to records on
    # disk and read per batch (trainer.data.train_set): the same batches either way
    pixels_in_memory_gib: float = field(default=4.0, metadata=at_least(0))
    # training-image augmentation (AUGMENT_MODES); official needs inputs built with it
    augment: str = field(default="none", metadata=one_of(*AUGMENT_MODES))
    # which training triplets an epoch holds (EPOCH_SAMPLING)
    epoch_sampling: str = field(default="all", metadata=one_of(*EPOCH_SAMPLING))
    deterministic: bool = False
    # val metric, or list of metrics whose sum, that selects the best epoch / early stopping
    val_metric: str | list[str] = field(default="R@10", metadata=satisfies(
        _valid_val_metric, "R@K or Rsubset@K (K >= 1), or a list of distinct such names, "
        "e.g. [R@10, R@50]"))
    # target: a val hit is the target image; caption: any image with the target's caption
    # (Fashion200K, as the official validation on its test queries)
    val_hit_rule: str = field(default="target", metadata=one_of("target", "caption"))
    # seeds initialisation, shuffling and dropout only (top-level `seed` seeds the data), so a
    # seed sweep reuses every stage before train
    seed: int = field(default=0, metadata=at_least(0))
    grad_checkpointing: bool = False
    # torch.compile each transformer block: same maths, faster GPU steps (compiling costs ~20 s
    # on a GPU machine, minutes on a small CPU)
    compile: bool = False

    def __post_init__(self) -> None:
        check_fields(self, "train")


@dataclass(frozen=True)
class PretrainConfig:
    """Optimisation settings of one pretraining run."""

    epochs: int = field(default=10, metadata=at_least(0))  # 0: no pretraining
    batch_size: int = field(default=128, metadata=at_least(2))
    lr: float = field(default=2e-3, metadata=above(0))
    weight_decay: float = field(default=0.1, metadata=at_least(0))
    warmup_steps: int = field(default=50, metadata=at_least(0))
    seed: int = field(default=0, metadata=at_least(0))
    device: str = field(default="auto", metadata=device())

    def __post_init__(self) -> None:
        check_fields(self, "pretrain")
