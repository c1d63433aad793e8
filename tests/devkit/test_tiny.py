"""Tiny random models: written to disk and loaded back through the product's own loaders."""

from __future__ import annotations

import json
from pathlib import Path

from devkit.faults import no_network
from devkit.tiny import build_tiny_blip2, build_tiny_sentence_model, build_tiny_tagger
from pipeline.keyphrases import extract_keywords, load_keyword_model
from pipeline.keyphrases.model import load_sentence_model


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
    import pytest

    # a tagger must read this model's width (32 + 2 punctuation flags)
    tagger = build_tiny_tagger(tmp_path / "tagger.npz", width=32)
    with no_network():
        with pytest.raises(ValueError, match="reads 386 features"):
            load_keyword_model(str(model_dir))
        model = load_keyword_model(str(model_dir), tagger=tagger)
    assert model.dimension == 32
    text = "is red with long sleeves and has a floral print"
    [phrases] = extract_keywords(model, [text])
    # Random weights tag arbitrary spans, but every phrase is a span of the text.
    assert phrases and all(p in text for p in phrases)


def test_keyword_model_sums_its_linears_on_integer_codes(tmp_path: Path) -> None:
    from pipeline.keyphrases.int8 import RowInt8Linear

    model_dir = build_tiny_sentence_model(tmp_path / "minilm", seed=0)

    def integer_layers(**kwargs: bool) -> int:
        st = load_sentence_model(str(model_dir), **kwargs)
        return sum(isinstance(m, RowInt8Linear) for m in st.modules())

    assert integer_layers() > 0  # on every machine: the kernel changes, the codes do not
    assert integer_layers(integer=False) == 0
