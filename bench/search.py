"""search: query latency and batch throughput of a 20,000-image index on CPU; index build rate.

`bench search` (one line each, details on stderr):
- `search-latency` (vs=strong): p50 of one query against a 20,000 x 1,024 gallery (ViT-H-14's
  width) of clustered random unit embeddings (see `_unit`), ours =
  `trainer.eval.index.GalleryIndex.search` on the exact index (a float16 scan with a proven
  error margin, then the exact float64 re-scoring); baseline = what a competent user writes, a
  float32 `gallery @ q` then `torch.topk` (or `np.argpartition`, whichever is faster here),
  timed interleaved with ours. check = queries whose top 10 ids agree. The 128-wide gallery
  (the demo model's width) is a note.
- `search-batch` (vs=strong): queries/s for a batch of 1,000 queries, ours against a float32
  `queries @ gallery.T` + `torch.topk`; check as above.
- `search-approx` (vs=ours): p50 of one query on HNSW against our exact index; check = HNSW's
  recall@10 against exact (IVF in the notes).
- `search-build` (vs=strong): index build images/s with dqu-tiny (random weights: the rate
  does not depend on them), ours = `embed_images` in batches of 256 plus the FAISS build;
  baseline = a plain loop over the same batches of 256 (normalise, `encode_image`,
  `F.normalize`, stack), as the official test.py embeds; check = the largest difference
  between the two sides' embeddings.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.common import (
    BenchResult,
    check_scale,
    emit,
    interleaved,
    median,
    note,
    script_main,
    timed,
)
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


def _topk_torch(gallery: torch.Tensor, queries: np.ndarray) -> np.ndarray:
    """Strong baseline: float32 scores by one matmul, then torch.topk."""
    return torch.topk(torch.from_numpy(queries) @ gallery.T, K, dim=1).indices.numpy()


def _topk_numpy(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Strong baseline: float32 scores by one matmul, then np.argpartition and a sort of k."""
    sims = queries @ gallery.T
    top = np.argpartition(-sims, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def _agree(ours: np.ndarray, base: np.ndarray) -> str:
    """How many queries' top-k id lists agree, e.g. same-top10=200/200."""
    same = sum(a.tolist() == b.tolist() for a, b in zip(ours, base, strict=True))
    return f"same-top{K}={same}/{len(ours)}"


def _latencies(fn, queries: np.ndarray) -> list[float]:  # noqa: ANN001
    return [timed(lambda q=q: fn(q[None, :]))[0] * 1e3 for q in queries]


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def _latency(gallery_n: int, singles: int, rng: np.random.Generator) -> list[BenchResult]:
    for dim in (128, 1024):
        gallery, queries = _unit(gallery_n, dim, rng), _unit(singles, dim, rng)
        exact = _index(gallery, IndexSpec("flat"))
        exact.search(queries[:1], K)  # builds the float16 scan, as a server's first query does
        tensor = torch.from_numpy(gallery)
        sides = {"ours": lambda q, i=exact: i.search(q, K),
                 "torch.topk": lambda q, g=tensor: _topk_torch(g, q),
                 "np.argpartition": lambda q, g=gallery: _topk_numpy(g, q)}
        times: dict[str, list[float]] = {name: [] for name in sides}
        # Side by side in blocks, twice: numpy's BLAS and torch's OpenMP threads spin a while
        # after each call, so alternating them query by query would slow both down.
        for _ in range(2):
            for name, fn in sides.items():
                times[name] += _latencies(fn, queries)
        p50 = {name: median(values) for name, values in times.items()}
        base = min(("torch.topk", "np.argpartition"), key=p50.get)
        check = _agree(exact.search(queries, K)[0], sides[base](queries))
        note(f"one query, {gallery_n} x {dim}: "
             + "; ".join(f"{name} p50 {p50[name]:.3f} ms p95 {_p95(values):.3f} ms"
                         for name, values in times.items())
             + f"; baseline = the faster, {base}; {check}")
    result = emit(BenchResult("search-latency", p50["ours"], p50[base], "ms", False,
                              vs="strong", path="float32", check=check))
    return [result, *_approx(gallery, queries, exact, p50["ours"])]


def _approx(gallery: np.ndarray, queries: np.ndarray, exact: GalleryIndex, exact_p50: float
            ) -> list[BenchResult]:
    truth = exact.search(queries, K)[0]
    results, recalls = {}, {}
    for spec in (IndexSpec("hnsw"), IndexSpec("ivf", nprobe=16)):
        seconds, index = timed(lambda spec=spec: _index(gallery, spec))
        times = _latencies(lambda q, index=index: index.search(q, K), queries)
        found = index.search(queries, K)[0]
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)])
        note(f"{spec.kind}: build {seconds:.2f} s, one query p50 {median(times):.3f} ms p95 "
             f"{_p95(times):.3f} ms, recall@10 vs exact {recall:.3f}")
        results[spec.kind], recalls[spec.kind] = median(times), recall
    return [emit(BenchResult("search-approx", results["hnsw"], exact_p50, "ms", False,
                             vs="ours", path="float32",
                             check=f"recall@{K}={recalls['hnsw']:.3f}"))]


def _batch(gallery_n: int, batch: int, rng: np.random.Generator) -> BenchResult:
    gallery, queries = _unit(gallery_n, 1024, rng), _unit(batch, 1024, rng)
    exact = _index(gallery, IndexSpec("flat"))
    tensor = torch.from_numpy(gallery)
    ours, base = interleaved(lambda: timed(lambda: exact.search(queries, K))[0],
                             lambda: timed(lambda: _topk_torch(tensor, queries))[0], 3)
    check = _agree(exact.search(queries, K)[0], _topk_torch(tensor, queries))
    note(f"batch of {batch}: ours {min(ours):.3f} s, float32 matmul + torch.topk "
         f"{min(base):.3f} s; {check}")
    return emit(BenchResult("search-batch", batch / min(ours), batch / min(base), "queries/s",
                            True, vs="strong", path="float32", check=check))


def _build(images: int, rng: np.random.Generator) -> BenchResult:
    import torch.nn.functional as F  # noqa: N812

    from trainer.config import ClipConfig
    from trainer.data.meta import InputsMeta
    from trainer.data.pixels import PixelStore
    from trainer.eval.embed import embed_images
    from trainer.models.clip import input_spec
    from trainer.models.saved import build_model
    from trainer.runtime import resolve_precision

    spec = input_spec("dqu-tiny")
    meta = InputsMeta("dqu-tiny", spec.image_size, spec.mean, spec.std, spec.context_length)
    model = build_model(ClipConfig(model="dqu-tiny"), "dqu", 0.5, 10.0,
                        torch.device("cpu")).eval()
    side = spec.image_size
    pixels = rng.integers(0, 256, (images, side, side, 3), dtype=np.uint8)
    store = PixelStore([pixels], side)
    precision = resolve_precision("off", torch.device("cpu"))
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)

    def ours() -> tuple[float, np.ndarray]:
        seconds, feats = timed(lambda: embed_images(model, store, meta, 256,
                                                    torch.device("cpu"), precision,
                                                    report=False).numpy())
        return seconds + timed(lambda: build_faiss(feats, IndexSpec()))[0], feats

    @torch.inference_mode()
    def plain() -> np.ndarray:
        out = []
        for start in range(0, images, 256):
            # a contiguous NCHW copy, then in-place maths: what a careful user writes
            batch = torch.from_numpy(pixels[start:start + 256]).permute(0, 3, 1, 2)
            batch = batch.contiguous().float().div_(255.0).sub_(mean).div_(std)
            out.append(F.normalize(model.clip.encode_image(batch).float(), dim=-1))
        return torch.cat(out).numpy()

    runs = interleaved(lambda: ours()[0], lambda: timed(plain)[0], 3)
    diff = float(np.abs(ours()[1] - plain()).max())
    note(f"index build, {images} images at {side} px (dqu-tiny), batches of 256: ours "
         f"{images / min(runs[0]):.0f} images/s (with the FAISS build), plain loop "
         f"{images / min(runs[1]):.0f} images/s; largest embedding difference {diff:.2e}")
    return emit(BenchResult("search-build", images / min(runs[0]), images / min(runs[1]),
                            "images/s", True, vs="strong", path="float32",
                            check=f"max-diff={diff:.1e}"))


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
