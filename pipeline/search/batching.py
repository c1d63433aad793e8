"""Dynamic micro-batching: concurrent queries wait in a queue and run through a Searcher together.

One worker thread owns the model: it takes the first waiting query, gathers whatever else
is queued or arrives within `max_wait_ms` (up to `max_batch`), and runs the batch through
`Searcher.search_many` (caption, keywords, drawing, encoders, lambda, index), so one batch is
in flight at a time and the model is never used by two threads. It waits only while the server
holds more requests than the batch (each counted by `request()` from its arrival to its
answer), so a lone client is not slowed by the wait. A batch that fails is rerun one query
at a time, so a bad query gets its own error and the others their results.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from pipeline.search.searcher import Query, Searcher

DEFAULT_MAX_BATCH = 16
DEFAULT_MAX_WAIT_MS = 5.0


@dataclass
class _Job:
    """One waiting query and the future its caller waits on."""

    query: Query
    k: int
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Answers `submit(query, k)` futures in batches of up to `max_batch` queries."""

    def __init__(self, searcher: Searcher, max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_ms: float = DEFAULT_MAX_WAIT_MS) -> None:
        if max_batch < 1:
            raise ValueError(f"--max-batch {max_batch}: at least 1 (1 = no batching)")
        if max_wait_ms < 0:
            raise ValueError(f"--max-wait-ms {max_wait_ms}: 0 or more milliseconds")
        self.searcher = searcher
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.batches = 0  # batches run, and queries in them (what /stats reports)
        self.queries = 0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._in_flight = 0  # requests inside the server (see request())
        self._count_lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="dqu-batcher", daemon=True)
        self._worker.start()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count one request as inside the server (a server wraps each POST /search in it)."""
        with self._count_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._in_flight -= 1

    def submit(self, query: Query, k: int) -> Future:
        """Queue one query; the future holds its result dict (with `unified`) or its error."""
        if not self._worker.is_alive():
            raise RuntimeError("the search worker has stopped")
        job = _Job(query, k)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Stop the worker after the queries already queued."""
        self._queue.put(None)
        self._worker.join(timeout=30)

    def _gather(self) -> list[_Job] | None:
        """The next batch: the first waiting job plus what comes within max_wait; None: stop."""
        first = self._queue.get()
        if first is None:
            return None
        jobs = [first]
        deadline = time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            # What is queued already is taken at once; an empty queue is waited on only while
            # the server holds requests outside this batch (being parsed, decoded or answered,
            # soon to come back), never for a lone client.
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or self._in_flight <= len(jobs):
                    break
                try:
                    job = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if job is None:
                self._queue.put(None)  # stop after this batch
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        """Worker loop: gather a batch, answer it, until close()."""
        while (jobs := self._gather()) is not None:
            self._answer(jobs)

    def _answer(self, jobs: list[_Job]) -> None:
        """Run one batch; on failure rerun each query alone so each gets its own outcome."""
        try:
            results = self.searcher.search_many([j.query for j in jobs], [j.k for j in jobs],
                                                with_unified=True)
        except Exception as err:  # noqa: BLE001 - handed to the waiting request
            if len(jobs) > 1:
                for job in jobs:
                    self._answer([job])
            else:
                jobs[0].future.set_exception(err)
            return
        self.batches += 1
        self.queries += len(jobs)
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)
