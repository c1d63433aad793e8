"""dask: wall time of the real render stage on 2 local dask workers vs in-process (1 worker).

Both sides call `pipeline.stages.render.run` on the same demo tables (references stretched to the
official 512x512 canvas before drawing), each into a fresh output folder so no shard is reused;
only `parallel` differs: `ParallelParams(scheduler="local", workers=2)` against
`ParallelParams(scheduler="sync")`. The 2-worker time includes starting and stopping the worker
processes, as a `dvc repro` pays it. With 2 cores the ideal is 2x; other processes on the
machine take from that directly.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from bench.common import (
    BenchResult,
    check_scale,
    demo_tables,
    emit,
    interleaved,
    median,
    note,
    quiet_stages,
    script_main,
    timed,
    workspace,
)
from pipeline.core.params import ParallelParams, Params, RenderParams
from pipeline.stages import render

SIZES = {
    "full": {"pairs": 2400, "image_size": 256, "rounds": 2},
    "tiny": {"pairs": 12, "image_size": 48, "rounds": 1},
}
SHARDS = 16  # 8 per worker: the last shard to finish leaves the other worker idle briefly
RENDER = RenderParams(canvas_size=512, font_size=40, shards=SHARDS)
TWO_WORKERS = ParallelParams(scheduler="local", workers=2)
ONE_WORKER = ParallelParams(scheduler="sync")


def shard_digests(out_dir: Path) -> list[str]:
    """sha256 of every query shard, to check the schedulers wrote the same bytes."""
    return [hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out_dir.glob("queries-*.parquet"))]


def render_seconds(dirs: dict[str, Path], out_dir: Path, parallel: ParallelParams) -> float:
    """Wall seconds of one render stage run into the empty folder `out_dir`."""
    params = Params(parallel=parallel, render=RENDER)
    with quiet_stages():
        seconds, _ = timed(lambda: render.run(params, dirs["prepare"], dirs["caption"],
                                              dirs["keywords"], out_dir))
    return seconds


def run(scale: str = "full", workdir: Path | None = None) -> list[BenchResult]:
    """Render with 2 workers and with 1, interleaved; check equal bytes; print the line."""
    check_scale(scale)
    size = SIZES[scale]
    with workspace(workdir) as work, tempfile.TemporaryDirectory(dir=work) as tmp:
        dirs = demo_tables(work, size["pairs"], size["image_size"])
        outputs = iter(Path(tmp) / f"render-{i}" for i in range(1000))
        two, one = interleaved(
            lambda: render_seconds(dirs, next(outputs), TWO_WORKERS),
            lambda: render_seconds(dirs, next(outputs), ONE_WORKER),
            size["rounds"],
        )
        if shard_digests(Path(tmp) / "render-0") != shard_digests(Path(tmp) / "render-1"):
            raise AssertionError("dask: 2-worker and in-process render wrote different shards")
        note(f"dask: {size['pairs']} triplets, {SHARDS} shards, 512px canvas; seconds "
             f"2 workers {[round(t, 1) for t in two]} 1 worker {[round(t, 1) for t in one]}; "
             "shards byte-identical")
        return [emit(BenchResult("dask", median(two), median(one), "seconds per render stage",
                                 higher_is_better=False, vs="ours", path="float32",
                                 check="shards-identical"))]


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.dask_render [--tiny]`."""
    script_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
