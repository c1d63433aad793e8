"""Checks that the input shards can serve the train section (before any training starts)."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.params import Params
from pipeline.core.strict import ParamsError
from trainer.data.meta import read_meta


def check_augment(params: Params, inputs_dir: Path) -> None:
    """Refuse a train.augment the input shards were not built for (or cannot serve)."""
    augment = params.train.augment
    has_canvases = read_meta(inputs_dir).train_size is not None
    if augment == "official" and params.train.freeze_encoders:
        raise ParamsError("train.augment: official crops images per epoch, which cached encoder "
                          "features (train.freeze_encoders: true) cannot see; set one of them off")
    if (augment == "official") != has_canvases:
        raise ParamsError(f"train.augment: {augment} but {inputs_dir} was built "
                          f"{'with' if has_canvases else 'without'} training canvases; rerun "
                          "the inputs stage (dvc repro inputs)")
