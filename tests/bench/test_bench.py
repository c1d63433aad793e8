"""Benchmarks: every one runs end to end at its tiny size and prints the documented line."""

import re

import pytest
from typer.testing import CliRunner

from bench import BENCHMARKS, run_benchmarks
from bench.common import BenchResult
from pipeline.cli import app

LINE = re.compile(r"^bench (?P<name>[a-z0-9-]+): ours=(?P<ours>[0-9.]+) "
                  r"baseline=(?P<baseline>[0-9.]+) ratio=(?P<ratio>[0-9.]+)x$")


def test_ratio_means_ours_better_for_rates_and_times():
    assert BenchResult("r", 30.0, 10.0, "samples/s", higher_is_better=True).ratio == 3.0
    assert BenchResult("t", 2.0, 10.0, "s", higher_is_better=False).ratio == 5.0
    line = BenchResult("t", 2.0, 10.0, "s", False).line()
    assert line == "bench t: ours=2 baseline=10 ratio=5.0x"


def test_every_cpu_benchmark_prints_one_line_each(capsys):
    results = run_benchmarks(None, "tiny")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [m["name"] for m in matches] == ["loader", "frozen", "eval", "eval-rss", "dask",
                                           "search-latency", "search-approx", "search-batch",
                                           "search-build"]
    assert [r.name for r in results] == [m["name"] for m in matches]
    for match, result in zip(matches, results, strict=True):
        assert float(match["ratio"]) == pytest.approx(result.ratio, abs=0.051)


def test_gpu_train_script_runs_tiny_on_cpu(capsys):
    from bench import gpu_train

    gpu_train.main(["--tiny", "--batch-sizes", "2"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and LINE.match(lines[0])["name"] == "gpu-train-b2", lines


def test_cli_rejects_an_unknown_benchmark():
    result = CliRunner().invoke(app, ["bench", "nope"])
    assert result.exit_code == 2
    assert all(name in result.output for name in BENCHMARKS)


def test_unknown_name_is_rejected_before_anything_runs():
    with pytest.raises(ValueError, match="unknown benchmark 'x'"):
        run_benchmarks(["x"], "tiny")
