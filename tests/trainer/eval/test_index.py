"""trainer.eval.index: exact order with evaluate's tie rule, masking, approximate kinds, files."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.eval.index import (
    GalleryIndex,
    IndexSpec,
    RetrievalIndexError,
    build_faiss,
    load_index,
    write_index,
)


def _unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def _index(gallery: np.ndarray, spec: IndexSpec | None = None) -> GalleryIndex:
    ids = [f"g{i}" for i in range(len(gallery))]
    return GalleryIndex(ids, ids, gallery, build_faiss(gallery, spec or IndexSpec()))


def test_exact_search_orders_by_score_then_gallery_position():
    gallery = _unit(50, 8)
    gallery[[7, 3, 30]] = gallery[12]  # exact duplicates tie: lower position first
    index = _index(gallery)
    positions, scores = index.search(gallery[12:13], 5)
    assert positions[0, :4].tolist() == [3, 7, 12, 30]
    expected = np.sort(gallery.astype(np.float64) @ gallery[12].astype(np.float64))[::-1][:5]
    assert scores[0] == pytest.approx(expected)


def test_excluded_positions_never_come_back_and_short_lists_pad():
    index = _index(_unit(6, 4))
    positions, _ = index.search(_unit(2, 4, seed=1), 10, exclude=[[0, 1], []])
    assert positions.shape == (2, 6)
    assert 0 not in positions[0] and 1 not in positions[0]
    assert positions[0, -2:].tolist() == [-1, -1] and sorted(positions[1]) == list(range(6))
    with pytest.raises(KeyError, match="'nope' is not in this index"):
        index.position("nope")


@pytest.mark.parametrize("spec", [IndexSpec("hnsw"), IndexSpec("ivf", nlist=8, nprobe=8)])
def test_approximate_kinds_find_the_exact_top10(spec):
    gallery = _unit(500, 16)
    queries = gallery[:20] + 0.01
    exact = _index(gallery).search(queries, 10)[0]
    found = _index(gallery, spec).search(queries, 10)[0]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
    assert recall >= 0.9  # ivf with nprobe == nlist is exhaustive; hnsw is near it here


def test_write_and_load_round_trip(tmp_path):
    gallery = _unit(20, 8)
    write_index(tmp_path, [f"g{i}" for i in range(20)], [f"/p/{i}.png" for i in range(20)],
                gallery, IndexSpec("ivf", nlist=4, nprobe=3), {"backbone": {"model": "m"}})
    loaded = load_index(tmp_path)
    assert loaded.embeddings == pytest.approx(gallery)
    assert loaded.manifest["embed_dim"] == 8 and loaded.manifest["size"] == 20
    assert loaded.faiss_index.nprobe == 3 and loaded.paths[2] == "/p/2.png"
    (tmp_path / "index.faiss").unlink()
    with pytest.raises(RetrievalIndexError, match="index.faiss is missing"):
        load_index(tmp_path)
    with pytest.raises(RetrievalIndexError, match="not an index folder"):
        load_index(tmp_path / "nothing")


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="index kind 'lsh' is unknown"):
        IndexSpec("lsh")
