"""Shared benchmark helpers: the result line, interleaved timing, notes, demo data, peak RSS.

Every benchmark prints exactly one stdout line per measurement and baseline kind,
`bench <name>: ours=<value> baseline=<value> ratio=<r>x vs=<kind> [path=<p>] [check=<c>]`, where
ratio > 1 means ours is better (whether the value is a rate or a time) and `vs` says what the
baseline stands for (BASELINE_KINDS). `check` is the agreement test of the two sides where they
should agree. Everything else (sizes, units, breakdowns) goes to stderr through `note`, so the
stdout lines stay machine-readable.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.params import (
    CaptionParams,
    DemoParams,
    ParallelParams,
    Params,
    PrepareParams,
)
from pipeline.core.shards import GALLERY, KEYWORDS, TRIPLETS, read_table, write_table
from pipeline.keyphrases.candidates import generate_candidates
from pipeline.stages import caption, inputs, prepare, render

SCALES = ("full", "tiny")
# What a baseline stands for: the official code's path (same inputs, batch and settings); what
# a competent user would write instead (torch.topk, argpartition, FAISS, a batched loop); the
# machine's bound for the work (a bare matmul, a copy of the bytes); or our own other setting.
BASELINE_KINDS = ("official", "strong", "limit", "ours")
MAX_KEYWORDS = 3  # keyword phrases drawn per query, about what KeyBERT keeps on the demo


@dataclass(frozen=True)
class BenchResult:
    """One measurement of ours against the baseline, in the unit `unit`."""

    name: str
    ours: float
    baseline: float
    unit: str
    higher_is_better: bool
    vs: str
    # Which kernel path ours took (pipeline.keyphrases.kernels: "int8 (int_mm)", "float32",
    # ...); the CPU benchmarks whose code has no int8 choice say "float32"; None (GPU scripts)
    # prints none.
    path: str | None = None
    # The agreement check of the two sides, e.g. "same-top10=1000/1000" or "loss-diff=0";
    # None where the sides compute different things on purpose (a bare matmul has no ranks).
    check: str | None = None

    def __post_init__(self) -> None:
        if self.vs not in BASELINE_KINDS:
            raise ValueError(f"bench {self.name}: vs={self.vs!r} is not one of {BASELINE_KINDS}")

    @property
    def ratio(self) -> float:
        """How many times better ours is (> 1 = ours better), whatever the unit's direction."""
        if self.higher_is_better:
            return self.ours / self.baseline
        return self.baseline / self.ours

    def line(self) -> str:
        """The one stdout line of this measurement."""
        path = f" path={self.path.replace(' ', '')}" if self.path else ""
        check = f" check={self.check.replace(' ', '')}" if self.check else ""
        return (f"bench {self.name}: ours={_number(self.ours)} "
                f"baseline={_number(self.baseline)} ratio={self.ratio:.1f}x vs={self.vs}"
                f"{path}{check}")


def _number(value: float) -> str:
    """Plain decimal (no exponent), with about three significant digits for small values."""
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}" if value else "0"


def emit(result: BenchResult) -> BenchResult:
    """Print the result line (and its unit as a note) and hand the result back."""
    note(f"{result.name} vs={result.vs}: values in {result.unit} "
         f"({'higher' if result.higher_is_better else 'lower'} is better)")
    print(result.line(), flush=True)
    return result


@contextlib.contextmanager
def quiet_stages() -> Iterator[None]:
    """Send the pipeline stages' progress prints to stderr while benchmark data is built."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def kernel_path() -> str:
    """The path pipeline.keyphrases.kernels chose for the int8 fast paths: 'int8 (int_mm)', ..."""
    from pipeline.keyphrases.kernels import choice

    picked = choice()
    return f"int8 ({picked.op})" if picked.int8 else "float32"


@contextlib.contextmanager
def forced_int8(mode: str) -> Iterator[None]:
    """Run the block with DQU_INT8=`mode` (on / off / auto), then restore the caller's value."""
    from pipeline.keyphrases.kernels import ENV

    previous = os.environ.get(ENV)
    os.environ[ENV] = mode
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous


def other_int8_mode() -> str | None:
    """The DQU_INT8 value that forces the path not chosen here (None: there is no other)."""
    from pipeline.keyphrases.kernels import choice, exact_ops

    if choice().int8:
        return "off"
    return "on" if exact_ops() else None


def note(message: str) -> None:
    """A detail line on stderr (stdout carries only the result lines)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def check_scale(scale: str) -> str:
    """Reject unknown scale names early."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; use one of {SCALES}")
    return scale


def interleaved(ours: Callable[[], float], baseline: Callable[[], float], rounds: int
                ) -> tuple[list[float], list[float]]:
    """Alternate ours and baseline `rounds` times; each call returns its own measurement.

    The machine is shared, so load drifts; alternating spreads that drift over both sides
    instead of charging it all to whichever ran second.
    """
    ours_values, baseline_values = [], []
    for _ in range(rounds):
        ours_values.append(ours())
        baseline_values.append(baseline())
    return ours_values, baseline_values


def median(values: list[float]) -> float:
    """Median of the rounds (robust to one round hit by another engineer's job)."""
    return float(statistics.median(values))


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(wall seconds, return value) of one call."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def sync_params(**sections: object) -> Params:
    """Pipeline params with in-process (sync) fan-out plus the given section overrides."""
    return Params(parallel=ParallelParams(scheduler="sync"), **sections)


def demo_tables(workdir: Path, train_pairs: int, image_size: int, seed: int = 0
                ) -> dict[str, Path]:
    """Prepare (demo adapter, train split only), caption (provided) and keyword tables.

    Built once per (pairs, size, seed) under `workdir` and reused by later benchmarks of the
    same run. Keywords are the project's rule-made candidate phrases (the KeyBERT ranking is
    skipped: what is drawn does not change what the benchmarks measure). The gallery is cut to
    the images the triplets use, so later stages do not process thousands of unused images.
    """
    root = Path(workdir) / f"demo-{train_pairs}-{image_size}-{seed}"
    dirs = {name: root / name for name in ("prepare", "caption", "keywords")}
    done = root / "complete"
    if done.is_file():
        return dirs
    params = sync_params(
        seed=seed,
        prepare=PrepareParams(demo=DemoParams(train_pairs=train_pairs, val_pairs=0,
                                              test_pairs=0, image_size=image_size)),
        caption=CaptionParams(backend="provided"),
    )
    with quiet_stages():
        prepare.run(params, dirs["prepare"])
        triplets = read_table(dirs["prepare"] / "triplets.parquet", TRIPLETS)
        used = pa.array(sorted(set(triplets["reference_id"].to_pylist())
                               | set(triplets["target_id"].to_pylist())), type=pa.string())
        gallery = read_table(dirs["prepare"] / "gallery.parquet", GALLERY)
        write_table(gallery.filter(pc.is_in(gallery["image_id"], value_set=used)),
                    dirs["prepare"] / "gallery.parquet", GALLERY)
        caption.run(params, dirs["prepare"], dirs["caption"])
    rows = [{"split": r["split"], "pair_id": r["pair_id"],
             "keywords": generate_candidates(r["modification"])[:MAX_KEYWORDS]}
            for r in triplets.select(["split", "pair_id", "modification"]).to_pylist()]
    dirs["keywords"].mkdir(parents=True, exist_ok=True)
    write_table(pa.Table.from_pylist(rows, schema=KEYWORDS), dirs["keywords"] / "keywords.parquet",
                KEYWORDS)
    done.touch()
    return dirs


def demo_inputs(dirs: dict[str, Path], root: Path, params: Params) -> Path:
    """Run the real render and inputs stages on `demo_tables` output; return root/inputs."""
    render.run(params, dirs["prepare"], dirs["caption"], dirs["keywords"], root / "render")
    inputs.run(params, dirs["prepare"], root / "render", root / "inputs")
    return root / "inputs"


def script_main(run: Callable[[str], object], doc: str, argv: list[str] | None) -> None:
    """A benchmark module's `python -m bench.NAME [--tiny]` entry point."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to check the script")
    args = parser.parse_args(argv)
    run("tiny" if args.tiny else "full")


@contextlib.contextmanager
def workspace(workdir: Path | None) -> Iterator[Path]:
    """`workdir` itself when given (the runner's shared folder), else a temporary folder."""
    if workdir is not None:
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="dqu-bench-") as tmp:
        yield Path(tmp)
