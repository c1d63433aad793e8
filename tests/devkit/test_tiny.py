"""Tiny random models: written to disk and loaded back through the product's own loaders."""

from __future__ import annotations

import json
from pathlib import Path

from devkit.faults import no_network
from devkit.tiny import build_tiny_blip2, build_tiny_sentence_model
from pipeline.keyphrases import extract_keywords, load_keyword_model


def test_tiny_blip2_is_saved_for_offline_loading(tmp_path: Path) -> None:
    tiny_dir = build_tiny_blip2(tmp_path / "blip2", seed=0)
    names = {path.name for path in tiny_dir.iterdir()}
    assert {"config.json", "tokenizer.json", "processor_config.json"} <= names
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["image_token_index"] is not None
    assert config["num_query_tokens"] == 4


def test_tiny_sentence_model_extracts_keywords_offline(tmp_path: Path) -> None:
    model_dir = build_tiny_sentence_model(tmp_path / "minilm", seed=0)
    assert (model_dir / "modules.json").is_file()
    import numpy as np
    import pytest

    from pipeline.keyphrases.tagger import Tagger

    rng = np.random.default_rng(0)
    tagger = tmp_path / "tagger.npz"  # a tagger must read this model's width (3 * 32 + 2)
    Tagger(rng.normal(size=(98, 8)).astype(np.float32), np.zeros(8, np.float32),
           rng.normal(size=(8, 3)).astype(np.float32), np.zeros(3, np.float32)).save(tagger)
    with no_network():
        with pytest.raises(ValueError, match="reads 1154 features"):
            load_keyword_model(str(model_dir))
        model = load_keyword_model(str(model_dir), tagger=tagger)
    assert model.dimension == 32
    text = "is red with long sleeves and has a floral print"
    [phrases] = extract_keywords(model, [text])
    # Random weights tag arbitrary spans, but every phrase is a span of the text.
    assert phrases and all(p in text for p in phrases)
