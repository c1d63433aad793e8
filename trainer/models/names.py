"""Whether a CLIP model name can be built, answered without importing torch or open_clip."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# Our small configs (dqu-tiny-rn: the demo's; dqu-tiny: a ViT one; dqu-test: for tests);
# trainer.models.clip registers them with open_clip.
MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _packaged_config_dirs() -> list[Path]:
    """open_clip's own model_configs folder(s), found without importing the package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(root) / "model_configs" for root in spec.submodule_search_locations]


@functools.cache
def is_known_model(name: str) -> bool:
    """True if `name` is one of our configs or an open_clip model name."""
    # A config file name, never a path: "../x" must not find a file outside the folders.
    if name and "/" not in name and "\\" not in name and not name.startswith("."):
        for folder in (MODEL_CONFIG_DIR, *_packaged_config_dirs()):
            if (folder / f"{name}.json").is_file():
                return True
    # Slow (~5 s import), so only for names that no config folder has: open_clip may know
    # models registered some other way.
    import open_clip

    return name in open_clip.list_models()
