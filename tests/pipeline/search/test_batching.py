"""Micro-batched queries get exactly what each gets alone; a bad one fails alone."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.search import Query, Searcher
from pipeline.search.batching import MicroBatcher
from pipeline.search.unify import QueryError


@pytest.fixture(scope="module")
def searcher(tiny_search):
    return Searcher(tiny_search["index"])


def _queries(tiny_search) -> list[tuple[Query, int]]:
    img = tiny_search["prepare"] / "img"
    out = []
    for n, (colour, new) in enumerate([("red", "green"), ("green", "blue"), ("blue", "red"),
                                       ("red", "blue"), ("green", "red"), ("blue", "green")]):
        path = img / f"test-{colour}-{(8, 14)[n % 2]}.png"
        reference = path if n % 3 else path.read_bytes()  # paths and uploads side by side
        out.append((Query(reference, f"make it {new} instead of {colour}", id=str(n),
                          caption=f"a {colour} square"), (3, 5, 10)[n % 3]))
    return out


def _plain(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "unified"}


def test_batched_results_are_the_one_at_a_time_results(searcher, tiny_search):
    queries = _queries(tiny_search)
    alone = [_plain(searcher.search_many([q], k)[0]) for q, k in queries]
    batcher = MicroBatcher(searcher, max_batch=len(queries), max_wait_ms=2000)
    futures: list = [None] * len(queries)
    start = threading.Barrier(len(queries))

    def client(i: int) -> None:
        with batcher.request():  # as the server counts each request it holds
            start.wait()  # all at once, as concurrent requests come
            futures[i] = batcher.submit(*queries[i])
            futures[i].result(timeout=60)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    together = [_plain(f.result(timeout=60)) for f in futures]
    batcher.close()
    assert batcher.batches < len(queries)  # they did share model passes
    assert batcher.queries == len(queries)
    for one, other in zip(alone, together, strict=True):
        assert [h["image_id"] for h in other["results"]] == [h["image_id"] for h in
                                                             one["results"]]
        assert other["keywords"] == one["keywords"] and other["text_query"] == one["text_query"]
        # a batched matmul rounds float32 in another order: ~1e-7 here, never a rank change
        assert other["lambda"] == pytest.approx(one["lambda"], abs=1e-6)
        assert [h["score"] for h in other["results"]] == pytest.approx(
            [h["score"] for h in one["results"]], abs=1e-6)
    # every reference is a gallery image (by path or by bytes): 6 images, 5 results at most
    assert [len(r["results"]) for r in together] == [min(k, 5) for _, k in queries]


def test_a_bad_query_in_a_batch_fails_alone(searcher, tiny_search):
    (good, k), (other, k2) = _queries(tiny_search)[:2]
    bad = Query(good.reference, "make it blue", caption=None)  # provided captions: needs one
    batcher = MicroBatcher(searcher, max_batch=3, max_wait_ms=2000)
    futures = [batcher.submit(good, k), batcher.submit(bad, 3), batcher.submit(other, k2)]
    assert len(futures[0].result(timeout=60)["results"]) == k
    with pytest.raises(QueryError, match="caption"):
        futures[1].result(timeout=60)
    assert len(futures[2].result(timeout=60)["results"]) == k2
    batcher.close()


def test_a_lone_query_does_not_wait_for_company(searcher, tiny_search):
    batcher = MicroBatcher(searcher, max_batch=16, max_wait_ms=5000)
    query, k = _queries(tiny_search)[0]
    batcher.submit(query, k).result(timeout=60)  # warm
    start = time.perf_counter()
    batcher.submit(query, k).result(timeout=60)
    assert time.perf_counter() - start < 2.5  # nothing else on its way: no 5 s wait
    batcher.close()


def test_max_batch_one_runs_one_query_per_pass(searcher, tiny_search):
    batcher = MicroBatcher(searcher, max_batch=1, max_wait_ms=0)
    futures = [batcher.submit(q, k) for q, k in _queries(tiny_search)[:3]]
    [f.result(timeout=60) for f in futures]
    batcher.close()
    assert batcher.batches == 3


@pytest.mark.parametrize(("size", "wait", "says"), [(0, 1, "max-batch"), (4, -1, "max-wait")])
def test_bad_settings_are_refused(searcher, size, wait, says):
    with pytest.raises(ValueError, match=says):
        MicroBatcher(searcher, size, wait)
