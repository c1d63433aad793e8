"""Atomic, pickle-free persistence of training state and model weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainer.atomic import write_with


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be loaded into this model."""


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save a dict of tensors / primitives atomically (loadable with weights_only=True)."""
    write_with(path, lambda tmp: _torch_save(state, tmp))


def _torch_save(state: dict[str, Any], path: Path) -> None:
    # Saved through a file object: given a path, torch names the zip's inner folder after the
    # (random) temp file, so equal states would give different bytes.
    with open(path, "wb") as handle:
        torch.save(state, handle)


def load_state(path: Path) -> dict[str, Any]:
    """Load a training-state dict onto the CPU without unpickling arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path} ({err}); delete it to start "
                              "training from scratch") from err


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
