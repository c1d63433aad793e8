"""Benchmarks of dqu-cir against the official DQU-CIR data path (docs/performance.md).

`python -m bench [NAME ...] [--tiny]` or `dqu bench [NAME]` runs the CPU benchmarks: `loader`,
`frozen`, `eval` (also prints `eval-rss`) and `dask`. Each prints one stdout line
`bench <name>: ours=<value> baseline=<value> ratio=<r>x` (ratio > 1: ours is better) on data it
generates itself; details go to stderr. `bench/gpu.sh` is the separate GPU script.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.common import BenchResult

# Benchmark name -> module with run(scale, workdir); imported only when that benchmark runs.
BENCHMARKS: dict[str, str] = {
    "loader": "bench.loader",
    "frozen": "bench.frozen",
    "eval": "bench.eval",
    "dask": "bench.dask_render",
    "search": "bench.search",
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
    results = []
    # One folder for the whole run, so benchmarks that need the same demo tables build them once.
    with tempfile.TemporaryDirectory(prefix="dqu-bench-") as workdir:
        for name in names:
            extra = {"augment": augment} if name == "loader" else {}
            results.extend(
                importlib.import_module(BENCHMARKS[name]).run(scale, Path(workdir), **extra))
    return results
