"""Atomic, pickle-free persistence of training state and model weights."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be loaded into this model."""


def _temp_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(name)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to a temp file beside `path`, then rename it into place."""
    tmp = _temp_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save a dict of tensors / primitives atomically (loadable with weights_only=True)."""
    tmp = _temp_path(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    tmp = _temp_path(path)
    try:
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
