"""The optimiser, its two learning-rate groups and their schedule, and the loss scaler."""

from __future__ import annotations

import torch

from trainer.config import TrainConfig
from trainer.models.fusion import DQUModel
from trainer.runtime import Precision


def lr_factor(train_cfg: TrainConfig, epoch: int) -> float:
    """LR multiplier of 0-based `epoch`: decayed from the 1-based epoch lr_decay_epoch on."""
    return train_cfg.lr_decay_factor if epoch + 1 >= train_cfg.lr_decay_epoch else 1.0


def make_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler: active for fp16 autocast (the official GradScaler), else a no-op."""
    return torch.amp.GradScaler(device.type, enabled=precision.use_scaler)


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


def head_state(model: DQUModel) -> dict[str, torch.Tensor]:
    """A copy of every state entry outside the (frozen) CLIP: fusion head and logit scale."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()
            if not name.startswith("clip.")}
