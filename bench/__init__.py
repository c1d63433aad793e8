"""Benchmarks of dqu-cir against the official DQU-CIR code and other baselines.

`python -m bench [NAME ...] [--tiny]` or `dqu bench [NAME]` runs the CPU benchmarks: `loader`,
`frozen`, `eval` (also prints `eval-rss`), `eval-stage`, `dask`, `search` and `keywords`, on
data each generates itself. Each prints one stdout line per baseline kind:

    bench <name>: ours=<value> baseline=<value> ratio=<r>x vs=<kind> path=<p> [check=<c>]

ratio > 1: ours is better; kind: what the baseline stands for (official, strong, limit or ours:
bench.common.BASELINE_KINDS); path: the kernel path taken; check: the agreement test where the
two sides must agree. A `bench cpu:` line (CPU capability and the int8-or-float32 choice of
pipeline.keyphrases.kernels, with its probe figures) comes first, a `bench goals:` line (each
issue goal, met or not) last; details go to stderr. `--int8 off|on` (or DQU_INT8) forces the
keyword model's other path, as a CPU of the other kind would take it. `bench/gpu.sh` is the
separate GPU script; `python -m bench.scale` the real-size stage sweep.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.common import BenchResult

# The issue goals, checked on every full run: (result name, baseline kind) -> (what is
# compared, minimum or maximum). "ratio" compares ours/baseline's ratio; "ours" ours' own value.
GOALS: dict[tuple[str, str], tuple[str, str, float]] = {
    ("loader", "official"): ("ratio", ">=", 10.0),
    ("eval", "official"): ("ratio", ">=", 25.0),
    ("eval", "limit"): ("ratio", ">=", 0.8),  # ours at most 1.25x a bare matmul + topk
    ("eval-rss", "official"): ("ours", "<", 2048.0),
    ("dask", "ours"): ("ratio", ">=", 1.7),
    ("keywords", "ours"): ("ours", ">=", 300.0),
    ("search-latency", "strong"): ("ratio", ">=", 1.0),  # a float32 matmul + top-k
}

# Benchmark name -> module with run(scale, workdir); imported only when that benchmark runs.
BENCHMARKS: dict[str, str] = {
    "loader": "bench.loader",
    "frozen": "bench.frozen",
    "eval": "bench.eval",
    "eval-stage": "bench.eval_stage",
    "dask": "bench.dask_render",
    "search": "bench.search",
    "keywords": "bench.keywords",
}


def run_benchmarks(names: Sequence[str] | None = None, scale: str = "full",
                   augment: str = "none") -> list[BenchResult]:
    """Run the named CPU benchmarks (all when None) in one shared work folder; return results.

    `augment` is the loader benchmark's train.augment (the others train no crops).
    """
    names = list(names or BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    from pipeline.keyphrases.kernels import choice

    # First, what decides the paths: the CPU kind and the measured int8-or-float32 choice.
    print(f"bench cpu: {choice().summary()}", flush=True)
    results = []
    # One folder for the whole run, so benchmarks that need the same demo tables build them once.
    with tempfile.TemporaryDirectory(prefix="dqu-bench-") as workdir:
        for name in names:
            extra = {"augment": augment} if name == "loader" else {}
            results.extend(
                importlib.import_module(BENCHMARKS[name]).run(scale, Path(workdir), **extra))
    print(goals_line(results, scale), flush=True)
    return results


def goals_line(results: Sequence[BenchResult], scale: str) -> str:
    """`bench goals: loader vs=official 19.6x >= 10x met; ...`: each goal, met or not."""
    parts = []
    for result in results:
        if (result.name, result.vs) not in GOALS:
            continue
        what, sign, bound = GOALS[result.name, result.vs]
        value = result.ratio if what == "ratio" else result.ours
        met = value >= bound if sign == ">=" else value < bound
        unit = "x" if what == "ratio" else f" {result.unit.split()[0]}"
        # two decimals below 10, so a ratio just under its bound does not print as the bound
        shown = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
        parts.append(f"{result.name} vs={result.vs} {shown}{unit} {sign} {bound:g}{unit} "
                     f"{'met' if met else 'NOT MET'}")
    verdict = ("toy sizes: goals apply to full runs" if scale == "tiny"
               else "all met" if all(p.endswith(" met") for p in parts) else "some NOT MET")
    return f"bench goals: {'; '.join(parts)} ({verdict})"
