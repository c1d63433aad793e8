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
    with no_network():
        model = load_keyword_model(str(model_dir))
    assert model.dimension == 32
    [phrases] = extract_keywords(model, ["is red with long sleeves and has a floral print"])
    # Random weights rank them arbitrarily, but every phrase is one of the rule-made candidates.
    assert phrases and set(phrases) <= {"red", "long sleeves", "floral print"}


def test_keyword_model_runs_float32_unless_int8_is_forced(tmp_path: Path, monkeypatch) -> None:
    from pipeline.keyphrases.int8 import RowInt8Linear
    from trainer.runtime import int8_matmul_available

    model_dir = build_tiny_sentence_model(tmp_path / "minilm", seed=0)

    def int8_layers() -> int:
        st = load_keyword_model(str(model_dir)).keybert.model.embedding_model
        return sum(isinstance(m, RowInt8Linear) for m in st.modules())

    monkeypatch.delenv("DQU_INT8", raising=False)
    assert int8_layers() == 0  # auto: one path for outputs on every CPU
    monkeypatch.setenv("DQU_INT8", "off")
    assert int8_layers() == 0
    monkeypatch.setenv("DQU_INT8", "on")
    assert (int8_layers() > 0) == int8_matmul_available()
