"""Where a model spec in params.yaml points: a packaged model, a local folder, or a hub id."""

from __future__ import annotations

import importlib
from pathlib import Path


def resolve_model(spec: str) -> str:
    """Turn `pkg:PACKAGE` into the model folder that package ships; other specs pass through.

    A spec that looks like a path (starts with '.', '/' or '~', or exists on disk) must exist:
    a typo there would otherwise be sent to the hub as an id.
    """
    if spec.startswith("pkg:"):
        name = spec[len("pkg:") :]
        try:
            package = importlib.import_module(name)
        except ImportError as err:
            raise FileNotFoundError(
                f"model {spec!r}: package {name!r} is not installed (pip install it)"
            ) from err
        folder = getattr(package, "MODEL_DIR", None) or Path(package.__file__).parent / "model"
        return str(folder)
    path = Path(spec).expanduser()
    if spec.startswith((".", "/", "~")) and not path.exists():
        raise FileNotFoundError(f"model {spec!r}: no such local folder; check the path in params")
    return str(path) if path.exists() else spec


# open_clip's own checkpoint suffixes; anything else that is not a path is a pretrained tag.
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def check_clip_weights(pretrained: str | None) -> None:
    """Fail before any work when clip.pretrained names a local checkpoint that does not exist."""
    if not pretrained:
        return
    looks_local = (
        pretrained.startswith((".", "/", "~"))
        or "/" in pretrained
        or pretrained.endswith(_CHECKPOINT_SUFFIXES)
    )
    if looks_local and not Path(pretrained).expanduser().is_file():
        raise FileNotFoundError(
            f"clip.pretrained {pretrained!r}: no such checkpoint file; fix the path, use an "
            f"open_clip tag, or null for random init"
        )
