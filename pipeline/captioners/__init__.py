"""Caption backends: `CAPTIONERS` maps `caption.backend` to the module that makes the captions.

A backend is one module in this folder with two functions (see `base.CaptionBackend`):

- `check(params: CaptionParams) -> None`: fail fast, before any work, on settings this backend
  cannot use (e.g. a local model folder that does not exist);
- `captions(references: ReferenceImages, params: Params, report: StageReport) -> dict[str, str]`:
  one caption per reference image id; unreadable images or missing captions go through
  `report.bad(...)`, which fails or counts a skip as `caption.on_bad_record` says.

A new backend = one file here + one line in CAPTIONERS + one test. Backends that load a model
keep their own settings in their own `caption.<backend>` sub-section of params.yaml.
Modules are imported only when their backend is used (BLIP-2 pulls in torch and transformers);
this package's __init__ imports nothing, so params can check a backend name cheaply.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module under pipeline/captioners/ implementing the backend interface above.
CAPTIONERS: dict[str, str] = {
    "provided": "pipeline.captioners.provided",  # the dataset's own captions (Fashion200K, files)
    "blip2": "pipeline.captioners.blip2",  # BLIP-2 via transformers, fanned out over dask
}


def load_backend(name: str) -> ModuleType:
    """The module of caption backend `name`; a ValueError lists the known names."""
    if name not in CAPTIONERS:
        raise ValueError(f"caption.backend: unknown backend {name!r}; known: {sorted(CAPTIONERS)}")
    return importlib.import_module(CAPTIONERS[name])
