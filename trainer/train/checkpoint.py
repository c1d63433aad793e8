"""Atomic, pickle-free persistence of the resumable training state (checkpoint/state.pt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.models.saved import CheckpointError
from trainer.util.atomic import write_with


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
