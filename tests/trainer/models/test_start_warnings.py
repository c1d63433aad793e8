"""Building a model whose weights load right after does not announce random initialisation."""

from __future__ import annotations

import logging

import pytest

from trainer.config import ClipConfig
from trainer.models.clip import load_clip
from trainer.models.saved import load_trained, save_model_weights

NOTICE = "initialized randomly"


def test_a_truly_random_clip_still_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        load_clip(ClipConfig(model="dqu-test"))
    assert NOTICE in caplog.text  # the warning is true here and stays


def test_checkpoint_and_trained_folder_load_quietly(tmp_path, caplog) -> None:
    bundle = load_clip(ClipConfig(model="dqu-test"))
    checkpoint = tmp_path / "clip.safetensors"
    save_model_weights(bundle.model, checkpoint)
    from trainer.models.saved import build_model

    trained = build_model(ClipConfig(model="dqu-test"), "dqu", 0.5, 10.0, "cpu")
    save_model_weights(trained, tmp_path / "model.safetensors")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_clip(ClipConfig(model="dqu-test", pretrained=str(checkpoint)))
        load_trained(ClipConfig(model="dqu-test"), "dqu", 0.5, tmp_path)
    assert NOTICE not in caplog.text
    # the filter is gone afterwards: a later random model warns again
    with caplog.at_level(logging.WARNING):
        load_clip(ClipConfig(model="dqu-test"))
    assert NOTICE in caplog.text
