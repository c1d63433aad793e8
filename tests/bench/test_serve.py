"""`dqu bench serve` end to end on loopback at toy sizes: its lines, 0 errors, bad requests 4xx."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")

from bench import serve  # noqa: E402

LINE = re.compile(r"^bench (serve-[a-z]+): ours=[0-9.]+ baseline=[0-9.]+ ratio=[0-9.]+x vs=ours"
                  r" path=float32 check=(\S+)$")


def test_bench_serve_runs_both_servers_and_reports(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(serve.SIZES, "tiny", {"phase_s": 0.5, "soak_s": 1.0, "gallery": 12})
    results = serve.run("tiny", tmp_path)
    lines = capsys.readouterr().out.splitlines()
    matches = [LINE.match(line) for line in lines[:-1]]
    assert [m[1] for m in matches if m] == ["serve-throughput", "serve-batching", "serve-rss"]
    checks = dict(part.split("=", 1) for m in matches for part in m[2].split(","))
    assert checks["errors"] == "0" and checks["alive"] == "yes"
    sent = checks["bad-4xx"].split("/")
    assert sent[0] == sent[1] == "21"  # every bad request got a 4xx
    same, total = checks["same-top10"].split("/")
    assert same == total and int(total) > 0  # batching on and off: the same results
    assert lines[-1].startswith("bench goals: serve-throughput 16/1 clients")
    assert all(r.ours > 0 and r.baseline > 0 for r in results)
