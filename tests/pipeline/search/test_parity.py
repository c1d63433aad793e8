"""Batch search over the pipeline's own test queries returns evaluate's top 10."""

from __future__ import annotations

from devkit.search_parity import parity, parity_queries
from pipeline.search import Searcher


def test_search_returns_evaluates_top10(tiny_search):
    queries = parity_queries(tiny_search["prepare"], tiny_search["caption"], "test", 200)
    assert len(queries) == 4
    results = Searcher(tiny_search["index"]).search_many(queries, 10)
    summary = parity(queries, results, tiny_search["evaluate"] / "per_query.parquet", "test")
    assert summary["same_top10"] == 1.0, summary["differing"]
    # the reference is masked, as evaluate masks it: 6 gallery images, 5 results
    assert all(len(r["results"]) == 5 for r in results)
    assert all(r["keywords"] for r in results)  # KeyBERT found the new colour


def test_a_search_prints_no_embedding_progress(tiny_search, capsys, monkeypatch):
    monkeypatch.setenv("DQU_PROGRESS", "log")  # what a stage's embedding would print
    queries = parity_queries(tiny_search["prepare"], tiny_search["caption"], "test", 200)
    searcher = Searcher(tiny_search["index"])
    capsys.readouterr()
    searcher.search_many(queries[:1], 3)
    assert "embed queries" not in capsys.readouterr().err  # a server answers many requests
