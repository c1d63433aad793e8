"""Fan a stage's per-shard tasks out with dask: in-process, a LocalCluster, or a running scheduler.

Each task is a module-level function applied to one picklable argument (usually a shard spec),
so the same code runs on a laptop, a LocalCluster of processes, or a `dask scheduler` address.
Results come back in task order, so outputs do not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pipeline.config import ParallelParams

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def dask_client(params: ParallelParams) -> Iterator[Any]:
    """Yield a dask.distributed Client for `params.scheduler` (local cluster or address)."""
    from dask.distributed import Client, LocalCluster

    if params.scheduler == "local":
        cluster = LocalCluster(
            n_workers=params.workers,
            threads_per_worker=params.threads_per_worker,
            processes=True,
            dashboard_address=":0",  # a free port: parallel runs must not collide on 8787
            silence_logs=logging.ERROR,
        )
        with cluster, Client(cluster) as client:
            yield client
    else:
        with Client(params.scheduler, timeout="30s") as client:
            yield client


def map_tasks(fn: Callable[[T], R], tasks: Sequence[T], params: ParallelParams,
              resources: Mapping[str, float] | None = None) -> list[R]:
    """Apply `fn` to every task, fanned out per `params`; results in task order.

    `resources` (e.g. {"GPU": 1}) pins each task to workers of a running cluster started with
    `dask worker --resources GPU=1`, one such task at a time per worker: BLIP-2 captioning then
    runs only where a GPU is and never loads two models onto one card. In-process and
    LocalCluster runs ignore it (their workers are all alike and declare no resources).
    """
    tasks = list(tasks)
    in_process = params.scheduler == "sync" or (
        params.scheduler == "local" and (params.workers <= 1 or len(tasks) <= 1)
    )
    if in_process:
        return [fn(task) for task in tasks]
    with dask_client(params) as client:
        # pure=False: a task writes a shard file, so dask must not dedupe or cache it by key.
        remote = params.scheduler != "local"
        futures = client.map(fn, tasks, pure=False,
                             resources=dict(resources) if resources and remote else None)
        return client.gather(futures)
