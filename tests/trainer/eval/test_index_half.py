"""Few queries on an exact index: candidates of a bounded scan, re-scored, give the exact top-k."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.eval import index as index_module
from trainer.eval.index import GalleryIndex, IndexSpec, build_faiss, scan_error_bound


@pytest.fixture(params=[False, True], ids=["float32", "float16"])
def half(request, monkeypatch) -> bool:
    """Both scans: float16 by lowering the gallery size it starts at."""
    if request.param:
        monkeypatch.setattr(index_module, "HALF_MIN_VALUES", 1)
    return request.param


def _index(gallery: np.ndarray, kind: str = "flat") -> GalleryIndex:
    ids = [f"g{i}" for i in range(len(gallery))]
    return GalleryIndex(ids, ids, gallery, build_faiss(gallery, IndexSpec(kind)))


def _near_ties(rows: int = 3000, dim: int = 256, seed: int = 0, noise: float = 1e-4
               ) -> np.ndarray:
    """Rows a hair apart (1e-4 noise on a few centres): neither float16 nor float32 scores
    nor a fixed margin of candidates can order them alone."""
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


def _queries(gallery: np.ndarray, count: int = 20, scale: float = 1e-5):
    rng = np.random.default_rng(1)
    for row in rng.integers(0, len(gallery), count):
        yield int(row), gallery[row] + scale * rng.standard_normal(gallery.shape[1]).astype(
            np.float32)


@pytest.mark.parametrize("k", [1, 10, 50])
def test_single_queries_get_the_exact_top_k(half, k):
    gallery = _near_ties()
    index = _index(gallery)
    for row, query in _queries(gallery):
        banned = [row, 3]
        positions, _ = index.search(query[None], k, [banned])
        assert positions[0].tolist() == _truth(gallery, query, k, banned)
    assert index._scan is not None and index._scan.half == half  # the scan answered them


def test_without_the_error_margin_the_scan_would_miss(half, monkeypatch):
    monkeypatch.setattr(index_module, "scan_error_bound", lambda dim, half: 0.0)
    gallery = _near_ties()
    index = _index(gallery)
    misses = sum(index.search(q[None], 50)[0][0].tolist() != _truth(gallery, q, 50, [])
                 for _, q in _queries(gallery))
    assert misses > 0  # the margin is what makes it exact


@pytest.mark.parametrize("half_rows", [False, True])
def test_the_bound_covers_the_observed_error(half_rows):
    rng = np.random.default_rng(2)
    for dim in (64, 1024, 4096):
        gallery = rng.standard_normal((2000, dim)).astype(np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        scan = index_module._Scan.build(gallery, half_rows)
        assert scan is not None
        query = gallery[0] + 0.1 * rng.standard_normal(dim).astype(np.float32)
        error = np.abs(scan.scores(query) - gallery.astype(np.float64) @ query.astype(np.float64))
        assert error.max() <= scan_error_bound(dim, half_rows) * np.linalg.norm(query)


def test_a_scan_outside_the_bound_falls_back(monkeypatch):
    monkeypatch.setattr(index_module, "HALF_MIN_VALUES", 1)
    real = index_module._Scan.scores
    monkeypatch.setattr(index_module._Scan, "scores",
                        lambda self, q: real(self, q) + (0.01 if self.half else 0.0))
    gallery = _near_ties(500, 256)
    index = _index(gallery)
    assert index.search(gallery[7][None], 10)[0][0].tolist() == _truth(gallery, gallery[7],
                                                                        10, [])
    assert index._scan is not None and not index._scan.half  # float32 took over


def test_approximate_indexes_and_batches_do_not_use_it():
    gallery = _near_ties(500, 64, noise=0.1)
    hnsw = _index(gallery, "hnsw")
    hnsw.search(gallery[:1], 5)
    assert hnsw._scan is None
    flat = _index(gallery)
    flat.search(gallery[:index_module.SMALL_BATCH], 5)
    assert flat._scan is False  # never built: batches go to FAISS
