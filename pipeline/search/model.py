"""The trained dqu model behind an index, refused with a clear message when it does not fit."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.search.manifest import model_digest
from trainer.config import ClipConfig
from trainer.eval.index import RetrievalIndexError
from trainer.models.fusion import DQUModel
from trainer.models.saved import CheckpointError, load_trained


def load_backbone_model(manifest: dict, model_dir: Path, device: torch.device) -> DQUModel:
    """The trained dqu model in `model_dir` on the manifest's backbone; a clear error if unfit."""
    backbone = manifest["backbone"]["model"]
    try:
        model = load_trained(ClipConfig(model=backbone), "dqu", manifest["dropout"], model_dir,
                             device)
    except CheckpointError as err:
        raise RetrievalIndexError(
            f"model dir {model_dir} does not fit this index: the index was built with backbone "
            f"{backbone!r} (embedding width {manifest.get('embed_dim', '?')}) and these weights "
            f"do not load into it. Use the model the index was built with "
            f"({manifest['model_dir']}), or rebuild the index with this model "
            f"(`dqu index --model {model_dir} ...`)"
        ) from err
    return model


def load_search_model(manifest: dict, model_dir: Path, device: torch.device) -> DQUModel:
    """The trained dqu model the index was built with; a clear error for any other one."""
    model = load_backbone_model(manifest, model_dir, device)
    if model_digest(model_dir) != manifest["model_sha256"]:
        raise RetrievalIndexError(
            f"model dir {model_dir} holds other weights than the ones this index was embedded "
            f"with ({manifest['model_dir']}); rebuild the index with `dqu index --model "
            f"{model_dir} ...` so queries and gallery come from one model")
    return model
