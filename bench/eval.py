"""eval: the evaluate stage's ranking and scoring, against the official loop and the bare matmul.

`bench eval`: 5,000 queries against a 20,000-image gallery, from the same precomputed, normalised
float32 features (both sides start where the official `test.py` has its two feature arrays;
embedding costs the same encoder FLOPs on both sides and is not timed here). Ours is what the
evaluate stage calls for one query mode once features exist: `Scoring.rank` (exact target ranks,
the top 10 per query for per_query.parquet, one tie rule), `per_query_rows` and `Scoring.score`
(R@1/5/10/20/50/100). Three columns, timed side by side in one run:

- official: the official `test.py` after feature extraction, loops and lookups kept as written:
  per-row normalisation loops, one `sims = queries.dot(gallery.T)` (NumPy), a per-query mask
  through `list.index`, a per-query full `np.argsort`, and per-K loops of `list.index(...) in
  nns[:k]` (line `bench eval`, goal >= 25x);
- limit: a bare float32 matmul + top-10 of the same shapes into reused score buffers, no
  masking, no ranks: the fastest of torch.topk over 1,024-query chunks on torch's own threads,
  torch.topk over ours' blocks in single-threaded workers, and the same blocks with the grouped
  top-k ours uses (trainer.eval.folded, ~2.5x faster than torch.topk on a CPU), so the limit is
  never slower for want of ours' own top-k (line `bench eval-limit`, ratio = limit / ours, goal
  >= 0.8x: ours at most 1.25x the limit);
- ours.

Checks: ours' recall equals the official's within two queries (two BLAS libraries may order
near-equal scores differently), and ours' top-10 ids equal torch.topk's wherever no two scores
of a row's top 11 lie within float32 rounding of each other.

`bench eval-rss`: peak RSS of one CIRR-sized split's evaluation (4,000 queries, 2,300 gallery
images, 224 px, a small random-weight CLIP), each side in a fresh subprocess (`bench/rss_child.py`)
measured as its VmHWM (Linux /proc/self/status; ru_maxrss would inherit the parent's peak across
fork + exec), so data generation and the parent's memory are not counted; Python, torch,
open_clip and the model are. Ours: the evaluate stage's `run`, every query mode (one saved model
folder each), the training-free rows, per-query rows and metrics; query and gallery pixels are
streamed from the shards in batches (trainer.data.streaming), never all in memory. Official
(vs=official): its CIRR class's val records (float32 source, target and visual-query tensors per
query, one per gallery image, built up front as `get_val_queries` does) and `test_cirr_valset`'s
encoding, full argsort and recall loops, for its one model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import torch

from bench.common import (
    BenchResult,
    check_scale,
    emit,
    median,
    note,
    script_main,
    timed,
    workspace,
)
from pipeline.core.params import EvaluateParams
from pipeline.core.shards import GALLERY, INPUT_IMAGES, INPUT_QUERIES, write_table
from pipeline.stages.evaluate import PER_QUERY_TOP, Scoring, per_query_rows
from trainer.config import QUERY_MODES, ClipConfig
from trainer.data.meta import InputsMeta
from trainer.data.pixels import PixelStore
from trainer.data.tables import QueryTable
from trainer.eval.embed import SplitFeatures
from trainer.eval.folded import grouped_topk
from trainer.eval.rank import block_rows_for
from trainer.eval.split import EvalSplit
from trainer.models.saved import build_model, save_model_weights
from trainer.runtime import run_single_threaded, torch_threads
from trainer.util.shards import shard_name

SIZES = {
    "full": {"queries": 5000, "gallery": 20000, "dim": 128, "rounds": 3, "ours_calls": 5,
             "rss_queries": 4000, "rss_gallery": 2300, "rss_size": 224},
    "tiny": {"queries": 60, "gallery": 300, "dim": 16, "rounds": 1, "ours_calls": 1,
             "rss_queries": 24, "rss_gallery": 16, "rss_size": 32},
}
KS = (1, 10, 50)
BATCH_SIZE = 256  # params.yaml evaluate.batch_size
NOISE = 3.0  # query = target feature + noise: recall well between 0 and 100
RSS_MODEL = "dqu-bench-eval"
REPO_ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------- recall from features


def synthetic_features(queries: int, gallery: int, dim: int, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalised query / gallery features, each query's target row and a distinct reference."""
    rng = np.random.default_rng(seed)
    gallery_features = rng.standard_normal((gallery, dim), dtype=np.float32)
    gallery_features /= np.linalg.norm(gallery_features, axis=1, keepdims=True)
    target = rng.integers(0, gallery, queries)
    reference = (target + rng.integers(1, gallery, queries)) % gallery
    query_features = gallery_features[target] + NOISE * rng.standard_normal(
        (queries, dim), dtype=np.float32) / np.sqrt(dim)
    query_features /= np.linalg.norm(query_features, axis=1, keepdims=True)
    return query_features.astype(np.float32), gallery_features, target, reference


def eval_split(target: np.ndarray, reference: np.ndarray, gallery_ids: list[str]) -> EvalSplit:
    """An EvalSplit holding only what ranking reads (ids and index maps; no pixels)."""
    count = len(target)
    queries = QueryTable(
        split="test",
        pair_ids=[f"pair-{i}" for i in range(count)],
        reference_ids=[gallery_ids[r] for r in reference],
        target_ids=[gallery_ids[t] for t in target],
        tokens=np.zeros((count, 1), dtype=np.int32),
        visual=PixelStore([], 1),
    )
    return EvalSplit(
        meta=InputsMeta(model="none", image_size=1, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                        context_length=1),
        queries=queries,
        gallery_ids=gallery_ids,
        gallery=None,  # ranking never reads gallery pixels
        target_index=torch.from_numpy(target.astype(np.int64)),
        reference_index=torch.from_numpy(reference.astype(np.int64)),
    )


def official_records(target: np.ndarray, reference: np.ndarray, image_ids: np.ndarray
                     ) -> tuple[list[dict], list[dict]]:
    """test_queries / test_targets as the official dataset classes build them (ids only)."""
    test_queries = [{"source_img_id": int(image_ids[r]), "target_img_id": int(image_ids[t])}
                    for t, r in zip(target, reference, strict=True)]
    test_targets = [{"target_img_id": int(i)} for i in image_ids]
    return test_queries, test_targets


def official_recall(all_queries: np.ndarray, all_imgs: np.ndarray, test_queries: list[dict],
                    test_targets: list[dict], ks: tuple[int, ...]) -> dict[str, float]:
    """The official test.py from its feature arrays on (loops and lookups kept as written)."""
    for i in range(all_queries.shape[0]):
        all_queries[i, :] /= np.linalg.norm(all_queries[i, :])
    for i in range(all_imgs.shape[0]):
        all_imgs[i, :] /= np.linalg.norm(all_imgs[i, :])
    sims = all_queries.dot(all_imgs.T)
    test_targets_id = []
    for target in test_targets:
        test_targets_id.append(target["target_img_id"])
    for i, query in enumerate(test_queries):
        sims[i, test_targets_id.index(query["source_img_id"])] = -10e10
    nn_result = [np.argsort(-sims[i, :])[:max(ks)] for i in range(sims.shape[0])]
    out = {}
    for k in ks:
        hits = 0.0
        for i, nns in enumerate(nn_result):
            if test_targets_id.index(test_queries[i]["target_img_id"]) in nns[:k]:
                hits += 1
        out[f"R@{k}"] = 100 * hits / len(nn_result)
    return out


def stage_scoring(split: EvalSplit) -> Scoring:
    """The evaluate stage's protocols for the default params (R@K, target hits)."""
    cfg = EvaluateParams()
    return Scoring(cfg, None, split, sorted({1, 5, 10, 20, 50, 100, *cfg.ks}))


def ours_call(features: SplitFeatures, split: EvalSplit, scoring: Scoring
              ) -> tuple[dict[str, float], list[dict]]:
    """What the evaluate stage runs for one mode once its features exist."""
    rankings = scoring.rank(features, PER_QUERY_TOP)
    rows = per_query_rows(split, "dqu", rankings, None)
    return scoring.score(rankings), rows


def limit_threads(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """Bare matmul + topk(10) over 1,024-query chunks on torch's own threads, one score buffer."""
    gallery_t, rows = gallery.T, min(1024, len(queries))
    scores = torch.empty(rows, gallery.shape[0])
    out = torch.empty(len(queries), min(PER_QUERY_TOP, gallery.shape[0]), dtype=torch.long)
    with torch.inference_mode():
        for start in range(0, len(queries), rows):
            part = slice(start, start + rows)
            block = scores[:len(queries[part])]
            torch.mm(queries[part], gallery_t, out=block)
            out[part] = torch.topk(block, out.shape[1], dim=1).indices
    return out


TopK = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def _torch_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk along rows, as (values, indices)."""
    values, indices = torch.topk(scores, k, dim=1)
    return values, indices


def limit_blocks(queries: torch.Tensor, gallery: torch.Tensor, top: TopK | None = None
                 ) -> torch.Tensor:
    """Bare matmul + top(10) over ours' blocks, in single-threaded workers with reused buffers.

    `top` picks the top-k (default torch.topk; trainer.eval.folded.grouped_topk is the faster one
    ours uses, so the limit with it is the stronger bound).
    """
    select = top or _torch_topk
    rows = block_rows_for(gallery.shape[0], queries.shape[0])
    starts = list(range(0, len(queries), rows))
    out = torch.empty(len(queries), min(PER_QUERY_TOP, gallery.shape[0]), dtype=torch.long)
    gallery_t, workers = gallery.T, min(torch.get_num_threads(), len(starts)) or 1
    buffers = [torch.empty(rows, gallery.shape[0]) for _ in range(workers)]
    pending, lock = iter(starts), threading.Lock()

    def worker(i: int) -> None:
        while True:
            with lock:
                start = next(pending, None)
            if start is None:
                return
            part = slice(start, start + rows)
            block = buffers[i][:len(queries[part])]
            torch.mm(queries[part], gallery_t, out=block)
            out[part] = select(block, out.shape[1])[1]

    with torch.inference_mode(), torch_threads(1):
        run_single_threaded(worker, workers, workers)
    return out


def top_agreement(queries: torch.Tensor, gallery: torch.Tensor, ours: list[dict],
                  limit: torch.Tensor, data: EvalSplit) -> tuple[int, int]:
    """(rows compared, rows whose top-10 differ) among rows without float32 near-ties.

    A row is compared when its reference is outside the bare top 11 (the limit masks nothing)
    and no two of its top 11 scores lie within 1e-5 of each other.
    """
    compared = differ = 0
    values = torch.topk(queries @ gallery.T, PER_QUERY_TOP + 1, dim=1)
    for row, (vals, ids) in enumerate(zip(values.values, values.indices, strict=True)):
        if int(data.reference_index[row]) in ids.tolist() or bool(
                ((vals[:-1] - vals[1:]) < 1e-5).any()):
            continue
        compared += 1
        mine = ours[row]["top10"]
        differ += mine != [data.gallery_ids[i] for i in limit[row].tolist()]
    return compared, differ


def bench_recall(scale: str) -> list[BenchResult]:
    """Time the official loop, the limit and ours side by side; check them; print two lines."""
    size = SIZES[scale]
    queries, gallery, target, reference = synthetic_features(size["queries"], size["gallery"],
                                                             size["dim"])
    # The official ids are positions in the split's image list; its gallery lists them in
    # order of first appearance, so list.index scans about half the gallery on average.
    image_ids = np.random.default_rng(1).permutation(size["gallery"])
    gallery_ids = [f"img-{i}" for i in image_ids]
    data = eval_split(target, reference, gallery_ids)
    test_queries, test_targets = official_records(target, reference, image_ids)
    query_t, gallery_t = torch.from_numpy(queries), torch.from_numpy(gallery)
    features, scoring = SplitFeatures(query_t, gallery_t), stage_scoring(data)
    results: dict[str, object] = {}

    def ours() -> float:
        # One call is ~20x shorter than the official's: each round takes the median of a few
        # calls, as the official's seconds-long call averages scheduler noise away.
        calls = [timed(lambda: ours_call(features, data, scoring))
                 for _ in range(size["ours_calls"])]
        results["ours"] = calls[-1][1]
        return median([seconds for seconds, _ in calls])

    def official() -> float:
        # The official code divides in place; give it fresh copies, outside the timing.
        q, g = queries.copy(), gallery.copy()
        seconds, results["official"] = timed(lambda: official_recall(
            q, g, test_queries, test_targets, KS))
        return seconds

    def limit() -> float:
        threads = [timed(lambda: limit_threads(query_t, gallery_t))
                   for _ in range(size["ours_calls"])]
        blocks = [timed(lambda: limit_blocks(query_t, gallery_t))
                  for _ in range(size["ours_calls"])]
        grouped = [timed(lambda: limit_blocks(query_t, gallery_t, grouped_topk))
                   for _ in range(size["ours_calls"])]
        results["limit_threads"] = median([t for t, _ in threads])
        results["limit_blocks"] = median([t for t, _ in blocks])
        results["limit_grouped"] = median([t for t, _ in grouped])
        results["limit_top"] = blocks[-1][1]
        return min(results["limit_threads"], results["limit_blocks"], results["limit_grouped"])

    # The three alternate round by round, so load drift hits them alike.
    ours_times, official_times, limit_times = [], [], []
    for _ in range(size["rounds"]):
        ours_times.append(ours())
        official_times.append(official())
        limit_times.append(limit())
    mine, rows = results["ours"]
    theirs = results["official"]
    # Two BLAS libraries may order near-equal scores differently: allow a couple of queries.
    tolerance = 100 * 2 / size["queries"]
    for key in theirs:
        if abs(mine[key] - theirs[key]) > tolerance:
            raise AssertionError(f"eval: {key} differs: ours {mine[key]} official {theirs[key]}")
    compared, differ = top_agreement(query_t, gallery_t, rows, results["limit_top"], data)
    if differ:
        raise AssertionError(f"eval: top-10 ids differ from torch.topk in {differ} of "
                             f"{compared} rows without near-ties")
    ours_s, official_s, limit_s = (median(ours_times), median(official_times),
                                   median(limit_times))
    note(f"eval: {size['queries']} queries x {size['gallery']} gallery, d={size['dim']}; "
         f"check: recall ours {_shown(mine)} official {_shown(theirs)} (within {tolerance:.2f}); "
         f"top-10 ids equal torch.topk's in {compared - differ} of {compared} rows without "
         "near-ties")
    note(f"eval: seconds side by side: official {official_s:.2f}  limit {limit_s:.3f} (last "
         f"round: torch threads {results['limit_threads']:.3f}, blocks "
         f"{results['limit_blocks']:.3f}, blocks with grouped top-k "
         f"{results['limit_grouped']:.3f})  ours "
         f"{ours_s:.3f} = {ours_s / limit_s:.2f}x the limit; rounds ours "
         f"{[round(t, 3) for t in ours_times]}, torch threads {torch.get_num_threads()}, load "
         f"average {os.getloadavg()[0]:.1f}")
    check = f"recall-equal,top10-equal={compared - differ}/{compared}"
    return [emit(BenchResult("eval", ours_s, official_s, "seconds for the stage's ranking and "
                             "scoring vs the official loop", higher_is_better=False,
                             vs="official", path="float32", check=check)),
            emit(BenchResult("eval", ours_s, limit_s, "seconds vs a bare matmul + topk "
                             "(the limit)", higher_is_better=False, vs="limit", path="float32"))]


def _shown(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in metrics.items() if k in {f"R@{k}" for k in KS}}


# ------------------------------------------------------------------------- peak RSS of evaluate


def rss_model_config(image_size: int) -> dict:
    """A small open_clip config at the given resolution (ViT-H-14's text length)."""
    return {
        "embed_dim": 64,
        "vision_cfg": {"image_size": image_size, "layers": 1, "width": 64, "head_width": 32,
                       "patch_size": 32 if image_size >= 64 else 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                     "layers": 1},
    }


def write_cirr_sized_inputs(root: Path, queries: int, gallery: int, image_size: int) -> Path:
    """Input shards of one `val` split: queries, gallery images, gallery table and meta.json."""
    rng = np.random.default_rng(0)
    out = root / "inputs"
    out.mkdir(parents=True)
    gallery_ids = [f"val-img-{i:05d}" for i in range(gallery)]

    def pixels(count: int) -> list[bytes]:
        # Flat colour plus a noise patch: full-size arrays once read, small files on disk.
        rows = []
        for _ in range(count):
            image = np.full((image_size, image_size, 3), rng.integers(0, 256, 3), dtype=np.uint8)
            patch = min(16, image_size)
            image[:patch, :patch] = rng.integers(0, 256, (patch, patch, 3), dtype=np.uint8)
            rows.append(image.tobytes())
        return rows

    n_shards = 4
    for index, chunk in enumerate(np.array_split(np.arange(queries), n_shards)):
        count = len(chunk)
        table = pa.table({
            "split": ["val"] * count,
            "pair_id": [f"val-{i:05d}" for i in chunk],
            "reference_id": [gallery_ids[i % gallery] for i in chunk],
            "target_id": [gallery_ids[(i * 7 + 1) % gallery] for i in chunk],
            "text_tokens": pa.array(list(rng.integers(1, 49407, (count, 77), dtype=np.int32)),
                                    type=pa.list_(pa.int32())),
            "modification_tokens": pa.array(
                list(rng.integers(1, 49407, (count, 77), dtype=np.int32)),
                type=pa.list_(pa.int32())),
            "visual_pixels": pa.array(pixels(count), type=pa.binary()),
        }, schema=INPUT_QUERIES)
        write_table(table, out / shard_name("queries", index, n_shards), INPUT_QUERIES)
    for index, chunk in enumerate(np.array_split(np.arange(gallery), 2)):
        table = pa.table({"image_id": [gallery_ids[i] for i in chunk],
                          "pixels": pa.array(pixels(len(chunk)), type=pa.binary())},
                         schema=INPUT_IMAGES)
        write_table(table, out / shard_name("images", index, 2), INPUT_IMAGES)
    write_table(pa.table({"split": ["val"] * gallery, "image_id": gallery_ids}, schema=GALLERY),
                out / "gallery.parquet", GALLERY)
    (out / "meta.json").write_text(json.dumps({
        "model": RSS_MODEL, "image_size": image_size,
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711], "context_length": 77,
    }))
    return out


def save_mode_models(config_dir: Path, train_dir: Path) -> None:
    """A random-weight model folder per query mode, as the train stage leaves them."""
    open_clip.add_model_config(config_dir)
    for mode in QUERY_MODES:
        torch.manual_seed(0)
        model = build_model(ClipConfig(model=RSS_MODEL), mode, 0.5, 10.0, torch.device("cpu"))
        (train_dir / mode).mkdir(parents=True)
        save_model_weights(model, train_dir / mode / "model.safetensors")


def rss_child(side: str, *args: Path) -> dict:
    """Run one side of eval-rss in a fresh process; its JSON line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    seconds, proc = timed(lambda: subprocess.run(
        [sys.executable, "-m", "bench.rss_child", side, *map(str, args)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False))
    if proc.returncode != 0:
        raise RuntimeError(f"eval-rss {side} child failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "seconds": seconds}


def bench_rss(scale: str, workdir: Path | None) -> BenchResult:
    """Peak RSS of the evaluate stage's run vs the official CIRR validation, both measured."""
    size = SIZES[scale]
    queries, gallery, side = size["rss_queries"], size["rss_gallery"], size["rss_size"]
    with workspace(workdir) as work, tempfile.TemporaryDirectory(dir=work) as tmp:
        root = Path(tmp)
        inputs_dir = write_cirr_sized_inputs(root, queries, gallery, side)
        config_dir = root / "model_configs"
        config_dir.mkdir()
        (config_dir / f"{RSS_MODEL}.json").write_text(json.dumps(rss_model_config(side)))
        save_mode_models(config_dir, root / "train")
        mine = rss_child("ours", inputs_dir, config_dir, RSS_MODEL, root / "train",
                         root / "evaluate")
        theirs = rss_child("official", inputs_dir, config_dir, RSS_MODEL)
    for child in (mine, theirs):
        if child["queries"] != queries:
            raise AssertionError(f"eval-rss child scored {child['queries']} queries, not "
                                 f"{queries}")
    pixels = (queries + gallery) * side * side * 3 / 2**20
    note(f"eval-rss: {queries} queries, {gallery} gallery images at {side}px (CIRR val "
         f"counts), a 1-layer random CLIP; ours = the evaluate stage's run (modes "
         f"{', '.join(mine['modes'])}, training-free {', '.join(mine['training_free'])}, "
         f"per-query rows) in {mine['seconds']:.0f}s; official = its CIRR val records "
         f"(3 float32 tensors per query, 1 per gallery image) and test_cirr_valset, one model, "
         f"in {theirs['seconds']:.0f}s")
    note(f"eval-rss: of each peak, {mine['imports_mb']:.0f} / {theirs['imports_mb']:.0f} MiB "
         f"is the interpreter with torch and open_clip imported; ours streams the split's "
         f"{pixels:.0f} MiB of uint8 pixels in batches, never all held")
    return emit(BenchResult("eval-rss", mine["peak_rss_mb"], theirs["peak_rss_mb"],
                            "MiB peak RSS", higher_is_better=False, vs="official",
                            path="float32"))


def run(scale: str = "full", workdir: Path | None = None) -> list[BenchResult]:
    """Every eval measurement: the stage's ranking and scoring timed, then its peak RSS."""
    check_scale(scale)
    return [*bench_recall(scale), bench_rss(scale, workdir)]


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.eval [--tiny]`."""
    script_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
