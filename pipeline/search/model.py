"""The model behind an index: a trained dqu model, or a pretrained CLIP at a fixed lambda.

Either is refused with a clear message when it does not fit the index.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.search.manifest import file_digest, fixed_lambda, model_digest
from trainer.config import ClipConfig
from trainer.eval.index import RetrievalIndexError
from trainer.models.clip import EncoderConfigError
from trainer.models.fusion import DQUModel
from trainer.models.saved import CheckpointError, build_model, load_trained


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


def load_training_free(manifest: dict, device: torch.device) -> DQUModel:
    """The pretrained CLIP of a training-free index as a dqu model with its fixed lambda."""
    backbone = manifest["backbone"]
    pretrained = backbone["pretrained"]
    if manifest.get("model_sha256") and Path(pretrained).is_file() and (
            file_digest(Path(pretrained)) != manifest["model_sha256"]):
        raise RetrievalIndexError(
            f"{pretrained} holds other weights than the ones this training-free index was "
            f"embedded with; rebuild it with `dqu index --clip {backbone['model']} "
            f"--pretrained {pretrained} ...` so queries and gallery come from one model")
    try:
        model = build_model(ClipConfig(model=backbone["model"], pretrained=pretrained), "dqu",
                            0.0, 1.0, device, fixed_lambda=fixed_lambda(manifest))
    except (EncoderConfigError, CheckpointError, RuntimeError) as err:
        raise RetrievalIndexError(f"the CLIP of this training-free index ({backbone['model']}, "
                                  f"weights {pretrained!r}) cannot be loaded: {err}") from err
    return model.eval()


def load_search_model(manifest: dict, model_dir: Path | None, device: torch.device
                      ) -> DQUModel:
    """The model the index was built with; a clear error for any other one."""
    if fixed_lambda(manifest) is not None:
        if model_dir is not None:
            raise RetrievalIndexError(
                f"this index is training-free (CLIP {manifest['backbone']['model']}, lambda "
                f"fixed at {fixed_lambda(manifest)}): --model {model_dir} does not apply; to "
                f"search with a trained head, index with it: `dqu index --model {model_dir} "
                "--images DIR --out NEW`")
        return load_training_free(manifest, device)
    model_dir = Path(model_dir or manifest["model_dir"])
    model = load_backbone_model(manifest, model_dir, device)
    if model_digest(model_dir) != manifest["model_sha256"]:
        raise RetrievalIndexError(
            f"model dir {model_dir} holds other weights than the ones this index was embedded "
            f"with ({manifest['model_dir']}); rebuild the index with `dqu index --model "
            f"{model_dir} ...` so queries and gallery come from one model")
    return model
