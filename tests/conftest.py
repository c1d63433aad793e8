"""Shared test set-up: offline model hubs (set once, before any test module imports a library)."""

from __future__ import annotations

import os

# Tests never reach a model hub: tiny models are built on disk and loaded back by path.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
