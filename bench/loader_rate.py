"""loader_rate: samples/s of the training loader alone over an inputs folder (bench.scale).

`python -m bench.loader_rate --inputs artifacts/inputs --out artifacts/loader [--params
params.yaml] [--batch 64] [--batches 100] [--workers 0 2] [--pixels-in-memory-gib 0]` loads the
train split as a training run does (trainer.data.train_set: held in memory under the budget,
else unpacked to records first, or made from stored files with the params' render style when
the inputs were built with render.train_visual: loader; the loading is timed apart), then
times `--batches` shuffled batches up to normalised model-ready tensors (bench.loader.our_epoch:
the training step's work before the model; random crops too when the inputs hold canvases).
Writes loader.json into --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from bench.loader import our_epoch
from pipeline.core.loader_images import LoaderImages
from pipeline.core.params import load_params
from trainer.data.meta import read_meta
from trainer.data.sampler import EpochBatchSampler
from trainer.data.train_set import SPILL_DIR, load_train_set, train_pixel_bytes
from trainer.runtime import torch_threads


def measure(inputs_dir: Path, out_dir: Path, batch_size: int, batches: int,
            workers: list[int], budget_gib: float, maker: LoaderImages | None = None) -> dict:
    """Load (or unpack) the train split, time `batches` batches with each DataLoader worker
    count (a fresh epoch each, so no batch repeats); the figures as a dict."""
    meta = read_meta(inputs_dir)
    spill_dir = out_dir / SPILL_DIR
    start = time.perf_counter()
    dataset = load_train_set(inputs_dir, meta, False, budget_gib, spill_dir, maker)
    load_seconds = time.perf_counter() - start
    sampler = EpochBatchSampler(len(dataset), batch_size, seed=0)
    rates = {}
    with torch_threads(1):
        for epoch, count in enumerate(workers):
            rates[str(count)] = round(our_epoch(dataset, sampler, meta, epoch,
                                                max_batches=batches, num_workers=count), 1)
    unpacked = spill_dir.exists()
    shutil.rmtree(spill_dir, ignore_errors=True)
    return {"samples_per_s": rates[str(workers[0])], "samples_per_s_by_workers": rates,
            "batch_size": batch_size, "batches": min(batches, len(sampler)),
            "image_size": meta.image_size, "train_size": meta.train_size,
            "train_queries": len(dataset), "unpacked": unpacked,
            "made_from_files": meta.train_sources,
            "train_pixel_gib": round(train_pixel_bytes(dataset.queries, meta, False) / 2**30, 3),
            "load_seconds": round(load_seconds, 2)}


def main(argv: list[str] | None = None) -> None:
    """Parse the options, measure, write loader.json and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="whose render section draws loader-made queries")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="DataLoader worker processes, one timing per count")
    parser.add_argument("--pixels-in-memory-gib", type=float, default=0.0,
                        help="train.pixels_in_memory_gib (0: always unpack, the real-size path)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.batches < 1 or min(args.workers) < 0 \
            or args.pixels_in_memory_gib < 0:
        parser.error("--batch and --batches must be >= 1, --workers and "
                     "--pixels-in-memory-gib >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    maker = LoaderImages.from_params(load_params(args.params).render)
    figures = measure(args.inputs, args.out, args.batch, args.batches, args.workers,
                      args.pixels_in_memory_gib, maker)
    (args.out / "loader.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
