"""search: query latency and batch throughput of a 20,000-image index on CPU; index build rate.

`bench search` (one line each, details on stderr):
- `search-latency`: p50 of one query against a 20,000 x 1,024 gallery (ViT-H-14's width) of
  clustered random unit embeddings (see `_unit`), ours = `trainer.eval.index.GalleryIndex.search`
  on the exact FAISS index (inner product, then the exact float64 re-scoring of the top
  k + margin); baseline = the official `test.py` way, `queries.dot(gallery.T)` then a full
  `np.argsort`. p95 and the same at the demo model's width (128) are notes.
- `search-batch`: queries/s for a batch of 1,000 queries, same two sides.
- `search-approx`: p50 of one query on the approximate indexes (HNSW; IVF as a note) against
  the exact one, with their recall@10 against exact in the notes.
- `search-build`: index build images/s with dqu-tiny (random weights: the rate does not depend
  on them): pixels embedded in batches of 256 plus the FAISS build, against batches of 1.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.common import BenchResult, check_scale, emit, median, note, script_main, timed
from trainer.eval.index import GalleryIndex, IndexSpec, build_faiss

SIZES = {"full": (20_000, 1_000, 200), "tiny": (2_000, 50, 20)}  # gallery, batch, single runs
K = 10
CENTRES = 500


def _unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit rows clustered like image embeddings (uniform random ones are ANN's worst case).

    A gallery of products forms groups of near neighbours; 500 centres with noise give each
    row neighbours at cosine ~0.6-0.8, where a query lands near its target.
    """
    centres = rng.standard_normal((CENTRES, dim), dtype=np.float32)
    data = centres[rng.integers(0, CENTRES, rows)]
    data += rng.standard_normal((rows, dim), dtype=np.float32) * 0.7
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def _index(gallery: np.ndarray, spec: IndexSpec) -> GalleryIndex:
    ids = [f"img{i:06d}" for i in range(len(gallery))]
    return GalleryIndex(ids, ids, gallery, build_faiss(gallery, spec))


def _baseline(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The official test.py ranking: every score, then a full argsort per query."""
    sims = queries.dot(gallery.T)
    return np.argsort(-sims, axis=1)[:, :K]


def _latencies(fn, queries: np.ndarray) -> list[float]:  # noqa: ANN001
    return [timed(lambda q=q: fn(q[None, :]))[0] * 1e3 for q in queries]


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def _latency(gallery_n: int, singles: int, rng: np.random.Generator) -> list[BenchResult]:
    out = []
    for dim in (128, 1024):
        gallery, queries = _unit(gallery_n, dim, rng), _unit(singles, dim, rng)
        exact = _index(gallery, IndexSpec("flat"))
        ours = _latencies(lambda q, index=exact: index.search(q, K), queries)
        base = _latencies(lambda q, g=gallery: _baseline(g, q), queries)
        note(f"one query, {gallery_n} x {dim}: ours p50 {median(ours):.3f} ms p95 "
             f"{_p95(ours):.3f} ms; baseline p50 {median(base):.3f} ms p95 {_p95(base):.3f} ms")
    out.append(emit(BenchResult("search-latency", median(ours), median(base), "ms", False,
                                vs="strong", path="float32")))
    return out + _approx(gallery, queries, exact, median(ours))


def _approx(gallery: np.ndarray, queries: np.ndarray, exact: GalleryIndex, exact_p50: float
            ) -> list[BenchResult]:
    truth = exact.search(queries, K)[0]
    results = {}
    for spec in (IndexSpec("hnsw"), IndexSpec("ivf", nprobe=16)):
        seconds, index = timed(lambda spec=spec: _index(gallery, spec))
        times = _latencies(lambda q, index=index: index.search(q, K), queries)
        found = index.search(queries, K)[0]
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)])
        note(f"{spec.kind}: build {seconds:.2f} s, one query p50 {median(times):.3f} ms p95 "
             f"{_p95(times):.3f} ms, recall@10 vs exact {recall:.3f}")
        results[spec.kind] = median(times)
    return [emit(BenchResult("search-approx", results["hnsw"], exact_p50, "ms", False,
                             vs="ours", path="float32"))]


def _batch(gallery_n: int, batch: int, rng: np.random.Generator) -> BenchResult:
    gallery, queries = _unit(gallery_n, 1024, rng), _unit(batch, 1024, rng)
    exact = _index(gallery, IndexSpec("flat"))
    ours = min(timed(lambda: exact.search(queries, K))[0] for _ in range(3))
    base = min(timed(lambda: _baseline(gallery, queries))[0] for _ in range(3))
    note(f"batch of {batch}: ours {ours:.3f} s, baseline {base:.3f} s")
    return emit(BenchResult("search-batch", batch / ours, batch / base, "queries/s", True,
                            vs="strong", path="float32"))


def _build(images: int, rng: np.random.Generator) -> BenchResult:
    from trainer.config import ClipConfig
    from trainer.data.meta import InputsMeta
    from trainer.data.pixels import PixelStore
    from trainer.eval.embed import embed_images
    from trainer.models.clip import input_spec
    from trainer.models.saved import build_model
    from trainer.runtime import resolve_precision

    spec = input_spec("dqu-tiny")
    meta = InputsMeta("dqu-tiny", spec.image_size, spec.mean, spec.std, spec.context_length)
    model = build_model(ClipConfig(model="dqu-tiny"), "dqu", 0.5, 10.0, torch.device("cpu"))
    side = spec.image_size
    store = PixelStore([rng.integers(0, 256, (images, side, side, 3), dtype=np.uint8)], side)
    precision = resolve_precision("off", torch.device("cpu"))

    def build(batch: int, count: int) -> float:
        part = PixelStore([store.take(np.arange(count))], side)
        seconds, feats = timed(lambda: embed_images(model, part, meta, batch,
                                                    torch.device("cpu"), precision))
        return count / (seconds + timed(lambda: build_faiss(feats.numpy(), IndexSpec()))[0])

    # batches of 1 on the first 128 images only: the rate is what counts, and it is slow
    ours, base = build(256, images), build(1, min(images, 128))
    note(f"index build, {images} images at {side} px (dqu-tiny): batches of 256 "
         f"{ours:.0f} images/s, of 1 {base:.0f} images/s")
    return emit(BenchResult("search-build", ours, base, "images/s", True, vs="ours",
                            path="float32"))


def run(scale: str = "full", workdir: object = None) -> list[BenchResult]:
    """All search measurements; returns their results."""
    gallery_n, batch, singles = SIZES[check_scale(scale)]
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    results = _latency(gallery_n, singles, rng)
    results.append(_batch(gallery_n, batch, rng))
    results.append(_build(2_048 if scale == "full" else 16, rng))
    return results


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.search [--tiny]`."""
    script_main(lambda scale: run(scale), __doc__, argv)


if __name__ == "__main__":
    main()
