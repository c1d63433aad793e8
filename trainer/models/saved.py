"""A model on disk: building the fusion model, its weights file, and the CLIP it starts from.

`build_model` is the one place a DQUModel is made from a ClipConfig (through the open_clip
gateway); `load_trained` rebuilds a trained one from `MODEL_FILE`. Weights are safetensors,
written atomically; the pretrain stage's CLIP checkpoint (`PRETRAINED_CLIP`) is what every
query mode and the training-free scores start from when it exists.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainer.config import ClipConfig
from trainer.models.clip import load_clip, weights_loaded_after
from trainer.models.fusion import DQUModel
from trainer.runtime import resolve_device
from trainer.util.atomic import write_with

MODEL_FILE = "model.safetensors"  # a trained model's best weights, in its train folder
PRETRAINED_CLIP = "clip.safetensors"  # the pretrain stage's output, an open_clip state dict


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be loaded into this model."""


def save_model_weights(model: nn.Module, path: Path,
                       overrides: dict[str, torch.Tensor] | None = None) -> None:
    """Write a model's state dict, with `overrides` replacing entries, to safetensors atomically."""
    state = {**model.state_dict(), **(overrides or {})}
    tensors = {name: value.detach().to("cpu").contiguous() for name, value in state.items()}
    write_with(path, lambda tmp: save_file(tensors, str(tmp)))


def load_model_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors state dict into `model` strictly; clear error if it does not fit."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found; train the model first")
    state = load_file(str(path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match the configured model (check clip.model "
                              f"and the query mode): {err}") from err


def build_model(clip_cfg: ClipConfig, mode: str, dropout: float, logit_scale_init: float,
                device: torch.device, fixed_lambda: float | None = None,
                learn_logit_scale: bool = True) -> DQUModel:
    """CLIP from the gateway wrapped in the fusion model of `mode`, on `device`."""
    bundle = load_clip(clip_cfg, device)
    return DQUModel(bundle.model, bundle.embed_dim, mode, dropout, logit_scale_init,
                    fixed_lambda, learn_logit_scale).to(device)


def load_trained(clip_cfg: ClipConfig, mode: str, dropout: float, out_dir: str | Path,
                 device: str | torch.device = "cpu") -> DQUModel:
    """Rebuild the model and load the best weights from `out_dir/model.safetensors` (eval mode)."""
    device = resolve_device(str(device)) if isinstance(device, str) else device
    # Random init is enough: every weight is overwritten, and it avoids fetching a pretrained tag.
    with weights_loaded_after():
        model = build_model(ClipConfig(model=clip_cfg.model, pretrained=None), mode, dropout,
                            1.0, device)
    load_model_weights(model, Path(out_dir) / MODEL_FILE)
    return model.eval()


def pretrained_clip_in(pretrain_dir: Path | None) -> Path | None:
    """The pretrained CLIP checkpoint in a pretrain folder, or None when it trained nothing."""
    if pretrain_dir is None:
        return None
    path = Path(pretrain_dir) / PRETRAINED_CLIP
    return path if path.is_file() else None


def start_weights(clip: ClipConfig, pretrain_dir: Path | None) -> ClipConfig:
    """The CLIP to build: the pretrain folder's checkpoint if there is one, else clip's own."""
    path = pretrained_clip_in(pretrain_dir)
    return clip if path is None else ClipConfig(model=clip.model, pretrained=str(path))
