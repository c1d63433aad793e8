"""One query on an exact index: float16 scan candidates, re-scored, give the exact top-k."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.eval import index as index_module
from trainer.eval.index import GalleryIndex, IndexSpec, build_faiss, half_error_bound


def _index(gallery: np.ndarray, kind: str = "flat") -> GalleryIndex:
    ids = [f"g{i}" for i in range(len(gallery))]
    return GalleryIndex(ids, ids, gallery, build_faiss(gallery, IndexSpec(kind)))


def _near_ties(rows: int = 3000, dim: int = 256, seed: int = 0, noise: float = 1e-4
               ) -> np.ndarray:
    """Rows a hair apart (1e-4 noise on a few centres): float16 alone cannot order them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, dim)).astype(np.float32)
    data = centres[rng.integers(0, 4, rows)] + noise * rng.standard_normal((rows, dim)).astype(
        np.float32)
    data[[5, 17, 300]] = data[40]  # exact duplicates: ties broken by position
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def _truth(gallery: np.ndarray, query: np.ndarray, k: int, banned: list[int]) -> list[int]:
    exact = gallery.astype(np.float64) @ query.astype(np.float64)
    exact[banned] = -np.inf
    return [int(p) for p in np.lexsort((np.arange(len(exact)), -exact))[:k]]


@pytest.mark.parametrize("k", [1, 10, 50])
def test_single_queries_get_the_exact_top_k(k):
    gallery = _near_ties()
    index = _index(gallery)
    rng = np.random.default_rng(1)
    for row in rng.integers(0, len(gallery), 20):
        query = gallery[row] + 1e-5 * rng.standard_normal(gallery.shape[1]).astype(np.float32)
        banned = [int(row), 3]
        positions, scores = index.search(query[None], k, [banned])
        assert positions[0].tolist() == _truth(gallery, query, k, banned)
    assert index._half is not None  # the float16 scan answered them


def test_without_the_error_margin_the_scan_would_miss(monkeypatch):
    # The margin is what makes it exact: with none, near ties fall out of the top-k.
    monkeypatch.setattr(index_module, "half_error_bound", lambda dim: 0.0)
    gallery = _near_ties()
    index = _index(gallery)
    rng = np.random.default_rng(1)
    misses = 0
    for row in rng.integers(0, len(gallery), 20):
        query = gallery[row] + 1e-5 * rng.standard_normal(gallery.shape[1]).astype(np.float32)
        misses += index.search(query[None], 50)[0][0].tolist() != _truth(gallery, query, 50, [])
    assert misses > 0


def test_the_bound_covers_the_observed_error():
    rng = np.random.default_rng(2)
    for dim in (64, 1024, 4096):
        gallery = rng.standard_normal((2000, dim)).astype(np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        scan = index_module._HalfScan.build(gallery)
        assert scan is not None
        query = gallery[0] + 0.1 * rng.standard_normal(dim).astype(np.float32)
        error = np.abs(scan.scores(query) - gallery.astype(np.float64) @ query.astype(np.float64))
        assert error.max() <= half_error_bound(dim) * np.linalg.norm(query)


def test_a_scan_outside_the_bound_falls_back_to_faiss(monkeypatch):
    real = index_module._HalfScan.scores
    monkeypatch.setattr(index_module._HalfScan, "scores", lambda self, q: real(self, q) + 0.01)
    gallery = _near_ties(500, 256, noise=0.1)  # ties FAISS's float32 candidates can separate
    index = _index(gallery)
    query = gallery[7]
    assert index.search(query[None], 10)[0][0].tolist() == _truth(gallery, query, 10, [])
    assert index._half is None


def test_approximate_indexes_batches_and_narrow_rows_do_not_use_it():
    gallery = _near_ties(500, 256)
    hnsw = _index(gallery, "hnsw")
    hnsw.search(gallery[:1], 5)
    assert hnsw._half is None
    flat = _index(gallery)
    flat.search(gallery[:index_module.SMALL_BATCH], 5)
    assert flat._half is False  # never built: batches go to FAISS
    narrow = _index(_near_ties(500, index_module.HALF_MIN_DIM // 2))
    narrow.search(gallery[:1, : index_module.HALF_MIN_DIM // 2], 5)
    assert narrow._half is None
