"""What an index records so a search rebuilds the pipeline's queries: backbone, weights, params."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from pipeline.core.params import Params
from pipeline.core.strict import from_mapping, to_mapping
from trainer.data.meta import InputsMeta
from trainer.models.saved import MODEL_FILE

# The params sections a query's unification and encoding read.
QUERY_SECTIONS = ("caption", "keywords", "render", "clip")


def model_digest(model_dir: Path) -> str:
    """sha256 of the model dir's weights file (ties an index to the weights that embedded it)."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --model must be a trained model folder "
                                "(e.g. artifacts/train/dqu, written by `dqu train dqu`)")
    return file_digest(path)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(params: Params, model_dir: Path, meta: InputsMeta, source: dict) -> dict:
    """index.json contents (less the sizes write_index adds): backbone, weights, query params."""
    return {
        "backbone": {"model": params.clip.model, "pretrained": params.clip.pretrained},
        "model_dir": str(model_dir),
        "model_sha256": model_digest(model_dir),
        "dropout": params.train.dropout,
        "input": dataclasses.asdict(meta),
        "params": {name: to_mapping(getattr(params, name)) for name in QUERY_SECTIONS},
        "source": source,
    }


def training_free_manifest(params: Params, fixed_lambda: float, meta: InputsMeta) -> dict:
    """index.json contents of a training-free index: params.clip's CLIP, a fixed lambda.

    `model_dir` is None (no trained head); `model_sha256` is the checkpoint file's digest, or
    None for an open_clip tag (open_clip fetches a tag's one published file).
    """
    pretrained = params.clip.pretrained
    is_file = pretrained is not None and Path(pretrained).is_file()
    return {
        "backbone": {"model": params.clip.model, "pretrained": pretrained},
        "model_dir": None,
        "model_sha256": file_digest(Path(pretrained)) if is_file else None,
        "training_free": {"lambda": float(fixed_lambda)},
        "input": dataclasses.asdict(meta),
        "params": {name: to_mapping(getattr(params, name)) for name in QUERY_SECTIONS},
        "source": {},
    }


def fixed_lambda(manifest: dict) -> float | None:
    """The training-free index's fixed lambda, or None for an index of a trained model."""
    free = manifest.get("training_free")
    return None if free is None else float(free["lambda"])


def query_params(manifest: dict) -> Params:
    """The Params a query is unified with: the recorded sections, defaults elsewhere."""
    return from_mapping(Params, manifest["params"], where="index.json params")


def input_meta(manifest: dict) -> InputsMeta:
    """The encoder input spec recorded in the manifest."""
    data = dict(manifest["input"])
    data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
    return InputsMeta(**data)
