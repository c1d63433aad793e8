"""Fan a stage's per-shard tasks out with dask: in-process, local processes, or a running scheduler.

Each task is a module-level function applied to one picklable argument (usually a shard spec),
so the same code runs on a laptop, a pool of local processes, or a `dask scheduler` address.
Results come back in task order, so outputs do not depend on the number of workers.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from pipeline.core.params import ParallelParams
from trainer.util.progress import Progress

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """Yield a dask.distributed Client connected to a running scheduler at `address`."""
    from dask.distributed import Client

    with Client(address, timeout="30s") as client:
        yield client


def local_process_pool(workers: int, task_module: str) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of `workers` processes forked from a fresh server that has imported `task_module`.

    A dask LocalCluster took ~2 s to start (nanny, scheduler and worker processes that each
    import the project), a quarter of a demo-sized render stage. Workers forked from a
    forkserver start in milliseconds with the task's module already imported, and unlike
    plain fork they inherit none of the calling process's threads (pyarrow, torch pools).
    A task module may name heavy libraries its tasks import lazily in `WORKER_PRELOAD`: the
    server imports them once instead of every worker (sentence-transformers: ~5 s each).
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        extra = getattr(sys.modules.get(task_module), "WORKER_PRELOAD", ())
        context.set_forkserver_preload([task_module, *extra])
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)


def map_tasks(fn: Callable[[T], R], tasks: Sequence[T], params: ParallelParams,
              resources: Mapping[str, float] | None = None, *, desc: str | None = None,
              sizes: Sequence[int] | None = None, unit: str = "items") -> list[R]:
    """Apply `fn` to every task, fanned out per `params`; results in task order.

    `resources` (e.g. {"GPU": 1}) pins each task to workers of a running cluster started with
    `dask worker --resources GPU=1`, one such task at a time per worker: BLIP-2 captioning then
    runs only where a GPU is and never loads two models onto one card. In-process and local
    runs ignore it (their workers are all alike).

    `desc` shows progress (trainer.util.progress) as tasks finish, counting `sizes[i]` `unit`s for
    task i (one per task when None), so the rate reads in the stage's own items.
    """
    tasks = list(tasks)
    weights = list(sizes) if sizes is not None else [1] * len(tasks)
    with Progress(desc or "", sum(weights), unit, enabled=desc is not None) as progress:
        return _map_tasks(fn, tasks, params, resources, lambda i: progress.update(weights[i]))


def _map_tasks(fn: Callable[[T], R], tasks: list[T], params: ParallelParams,
               resources: Mapping[str, float] | None, done: Callable[[int], None]) -> list[R]:
    """map_tasks' fan-out; `done(i)` is called as each task i completes."""
    in_process = params.scheduler == "sync" or (
        params.scheduler == "local" and (params.workers <= 1 or len(tasks) <= 1)
    )
    if in_process:
        results = []
        for index, task in enumerate(tasks):
            results.append(fn(task))
            done(index)
        return results
    if params.scheduler == "local":
        import dask
        from dask import delayed

        workers = min(params.workers, len(tasks))
        parts = [delayed(fn, pure=False)(task) for task in tasks]
        with local_process_pool(workers, fn.__module__) as pool, _on_finish(
                {part.key: i for i, part in enumerate(parts)}, done):
            # pure=False: a task writes a shard file, so dask must not dedupe it by key;
            # chunksize=1: one shard per hand-out, so a slow shard never holds others back.
            return list(dask.compute(*parts, scheduler="processes", pool=pool, chunksize=1))
    from dask.distributed import as_completed

    with dask_client(params.scheduler) as client:
        futures = client.map(fn, tasks, pure=False,
                             resources=dict(resources) if resources else None)
        index_of = {future.key: i for i, future in enumerate(futures)}
        for future in as_completed(futures):
            done(index_of[future.key])
        return client.gather(futures)


@contextmanager
def _on_finish(index_of: Mapping[Any, int], done: Callable[[int], None]) -> Iterator[None]:
    """A dask local-scheduler callback calling done(i) when task i's key finishes."""
    from dask.callbacks import Callback

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in index_of:
            done(index_of[key])

    with Callback(posttask=posttask):
        yield
