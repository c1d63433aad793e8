"""What `dqu serve` prints while it starts: nothing misleading, no progress bars."""

from __future__ import annotations

import logging

from pipeline.search import Searcher
from pipeline.stages.keywords import keyword_model


def test_loading_a_trained_index_says_nothing_of_random_weights(tiny_search, caplog):
    with caplog.at_level(logging.WARNING):
        Searcher(tiny_search["index"])
    assert "initialized randomly" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_warm_loads_the_keyword_model_without_a_progress_bar(tiny_search, capfd):
    searcher = Searcher(tiny_search["index"])
    keyword_model.cache_clear()
    capfd.readouterr()
    searcher.unifier.warm()
    assert keyword_model.cache_info().currsize == 1  # loaded now, not on the first query
    assert "Loading weights" not in capfd.readouterr().err
