"""Benchmarks: every one runs end to end at its tiny size and prints the documented line."""

import re

import pytest
from typer.testing import CliRunner

import pipeline.keyphrases.kernels as kernels
from bench import BENCHMARKS, goals_line, run_benchmarks
from bench.common import BenchResult
from pipeline.cli import app

LINE = re.compile(r"^bench (?P<name>[a-z0-9-]+): ours=(?P<ours>[0-9.]+) "
                  r"baseline=(?P<baseline>[0-9.]+) ratio=(?P<ratio>[0-9.]+)x"
                  r"( path=(?P<path>float32|int8\((int_mm|onednn)\)))?$")


def test_ratio_means_ours_better_for_rates_and_times():
    assert BenchResult("r", 30.0, 10.0, "samples/s", higher_is_better=True).ratio == 3.0
    assert BenchResult("t", 2.0, 10.0, "s", higher_is_better=False).ratio == 5.0
    line = BenchResult("t", 2.0, 10.0, "s", False).line()
    assert line == "bench t: ours=2 baseline=10 ratio=5.0x"
    line = BenchResult("t", 2.0, 10.0, "s", False, path="int8 (int_mm)").line()
    assert line.endswith("path=int8(int_mm)")


@pytest.mark.parametrize("int8", ["auto", "off"])
def test_every_cpu_benchmark_prints_one_line_each(capsys, monkeypatch, int8):
    monkeypatch.setenv("DQU_INT8", int8)
    results = run_benchmarks(None, "tiny")
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.strip()]
    assert lines[0].startswith("bench cpu: ") and "cpu " in lines[0], lines
    assert lines[-1].startswith("bench goals: loader "), lines
    assert "(toy sizes: goals apply to full runs)" in lines[-1]
    matches = [LINE.match(line) for line in lines[1:-1]]
    assert all(m and m["path"] for m in matches), lines
    assert [m["name"] for m in matches] == ["loader", "frozen", "eval", "eval-limit",
                                           "eval-rss", "dask",
                                           "search-latency", "search-approx", "search-batch",
                                           "search-build", "keywords"]
    assert [r.name for r in results] == [m["name"] for m in matches]
    for match, result in zip(matches, results, strict=True):
        assert float(match["ratio"]) == pytest.approx(result.ratio, abs=0.051)
    assert matches[2]["path"] == matches[3]["path"] == "float32"  # one ranking path
    assert "eval: seconds side by side: official" in out.err
    keywords_path = matches[-1]["path"]
    assert (keywords_path == "float32") == (int8 == "off" or not kernels.use_int8())


def test_goals_line_says_which_goals_are_met():
    results = [BenchResult("eval", 0.1, 6.0, "s", False), BenchResult("eval-rss", 3000.0,
                                                                      9000.0, "MiB peak", False)]
    line = goals_line(results, "full")
    assert line == ("bench goals: eval 60.0x >= 25x met; eval-rss 3000.0 MiB < 2048 MiB "
                    "NOT MET (some NOT MET)")


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
