"""The render stage through a real `dask scheduler` + two `dask worker` processes on 127.0.0.1.

The cluster is started with the dask CLIs of this venv, from the repository root (so workers
import the project exactly as a user's cluster would), and always torn down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.captioners import blip2
from pipeline.core.parallel import map_tasks
from pipeline.core.params import (
    CaptionParams,
    KeywordsParams,
    ParallelParams,
    Params,
    PrepareParams,
    RenderParams,
)
from pipeline.core.report import StageReport
from pipeline.datasets import ADAPTERS
from pipeline.stages import caption, keywords, prepare, render
from tests.factories import REPO, tiny_dataset

# Guards against a hung cluster on a busy machine; never timing checks.
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 20


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """Start `python -m dask ARGS` in its own process group, logging to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def _wait_for_file(path: Path, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.is_file():
        if process.poll() is not None:
            pytest.fail(f"dask scheduler exited early:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"dask scheduler wrote no {path.name} in {START_TIMEOUT_S} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    """Address of a scheduler with two single-thread workers; only `gpu-worker` has GPU=1."""
    from dask.distributed import Client

    root = tmp_path_factory.mktemp("dask")
    scheduler_file = root / "scheduler.json"
    processes = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                         "--scheduler-file", str(scheduler_file),
                         "--idle-timeout", "600"],  # dies on its own if teardown never runs
                        root / "scheduler.log")]
    try:
        _wait_for_file(scheduler_file, processes[0], root / "scheduler.log")
        address = json.loads(scheduler_file.read_text())["address"]
        for name, extra in (("cpu-worker", []), ("gpu-worker", ["--resources", "GPU=1"])):
            processes.append(_start(
                ["worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                 "--name", name, "--no-dashboard", "--death-timeout", "60", *extra],
                root / f"{name}.log"))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Iterator[tuple[Params, Path]]:
    """Params and the prepare / caption / keywords outputs of the tiny dataset (in-process)."""
    ADAPTERS["tiny"] = tiny_dataset
    root = tmp_path_factory.mktemp("upstream")
    params = Params(
        parallel=ParallelParams(scheduler="sync"),
        prepare=PrepareParams(dataset="tiny"),
        caption=CaptionParams(backend="provided"),
        keywords=KeywordsParams(backend="provided"),
        render=RenderParams(shards=3, font_size=8),
    )
    prepare.run(params, root / "prepare")
    caption.run(params, root / "prepare", root / "caption")
    keywords.run(params, root / "prepare", root / "keywords")
    yield params, root
    del ADAPTERS["tiny"]


def _render(params: Params, root: Path, scheduler: str, out_name: str) -> Path:
    run_params = replace(params, parallel=ParallelParams(scheduler=scheduler))
    render.run(run_params, root / "prepare", root / "caption", root / "keywords",
               root / out_name)
    return root / out_name


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _executed_per_worker(address: str) -> dict[str, int]:
    """Tasks each worker of the cluster has executed so far, by worker name."""
    from dask.distributed import Client

    def executed(dask_worker) -> tuple[str, int]:  # noqa: ANN001 - the running Worker
        return dask_worker.name, dask_worker.state.executed_count

    with Client(address, timeout="30s") as client:
        return dict(client.run(executed).values())


def test_render_through_the_cluster_writes_the_sync_run_bytes(cluster: str, upstream) -> None:
    params, root = upstream
    before = _executed_per_worker(cluster)
    remote = _files(_render(params, root, cluster, "render-cluster"))
    after = _executed_per_worker(cluster)
    local = _files(_render(params, root, "sync", "render-sync"))
    assert sorted(remote) == ["queries-00000-of-00003.parquet", "queries-00001-of-00003.parquet",
                              "queries-00002-of-00003.parquet", "report.json"]
    assert remote == local
    # The three shards really ran on the cluster's workers, not in this process.
    assert sum(after.values()) - sum(before.values()) == 3


def test_resources_pin_tasks_to_the_workers_that_declare_them(cluster: str) -> None:
    def worker_name(_task: int) -> str:
        # Defined here so cloudpickle ships it by value: workers need not import this module.
        from dask.distributed import get_worker

        return get_worker().name

    params = ParallelParams(scheduler=cluster)
    assert set(map_tasks(worker_name, range(6), params, resources={"GPU": 1})) == {"gpu-worker"}
    # In-process runs have nowhere to place tasks, so they ignore resources.
    assert map_tasks(len, ["ab"], ParallelParams(scheduler="sync"), resources={"GPU": 1}) == [2]


def test_caption_asks_for_one_unit_of_its_worker_resource(upstream, monkeypatch) -> None:
    params, root = upstream
    asked = []

    def record(fn, tasks, parallel, resources=None, **_):  # noqa: ANN001, ANN202, ANN003
        asked.append(resources)
        return [({}, StageReport("caption", "skip")) for _ in tasks]

    monkeypatch.setattr(blip2, "map_tasks", record)
    cfg = replace(params.caption, backend="blip2", worker_resource="GPU", on_bad_record="skip")
    caption.run(replace(params, caption=cfg), root / "prepare", root / "caption-gpu")
    assert asked == [{"GPU": 1}]
