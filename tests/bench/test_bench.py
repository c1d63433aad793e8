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
                  r" vs=(?P<vs>official|strong|limit|ours)"
                  r"( path=(?P<path>float32|int8\((int_mm|onednn)\)))?"
                  r"( check=(?P<check>\S+))?$")


def test_ratio_means_ours_better_for_rates_and_times():
    assert BenchResult("r", 30.0, 10.0, "samples/s", True, "strong").ratio == 3.0
    assert BenchResult("t", 2.0, 10.0, "s", False, "official").ratio == 5.0
    line = BenchResult("t", 2.0, 10.0, "s", False, "limit").line()
    assert line == "bench t: ours=2 baseline=10 ratio=5.0x vs=limit"
    line = BenchResult("t", 2.0, 10.0, "s", False, "ours", path="int8 (int_mm)",
                       check="same ids=4/4").line()
    assert line.endswith("vs=ours path=int8(int_mm) check=sameids=4/4")


def test_a_baseline_kind_outside_the_four_is_refused():
    with pytest.raises(ValueError, match="vs='faster'"):
        BenchResult("t", 2.0, 10.0, "s", False, "faster")


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
    assert [m["name"] for m in matches] == ["loader", "frozen", "eval", "eval",
                                           "eval-rss", "eval-stage", "eval-stage", "dask",
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
    results = [BenchResult("eval", 0.1, 6.0, "s", False, "official"),
               BenchResult("eval", 0.1, 0.2, "s", False, "ours"),  # no goal for this kind
               BenchResult("eval-rss", 3000.0, 9000.0, "MiB peak", False, "official")]
    line = goals_line(results, "full")
    assert line == ("bench goals: eval vs=official 60.0x >= 25x met; eval-rss vs=official "
                    "3000.0 MiB < 2048 MiB NOT MET (some NOT MET)")
    # 0.79x must not print as the 0.8x it misses
    limit = [BenchResult("eval", 0.253, 0.2, "s", False, "limit")]
    assert goals_line(limit, "full") == ("bench goals: eval vs=limit 0.79x >= 0.8x NOT MET "
                                         "(some NOT MET)")


def test_gpu_train_script_runs_tiny_on_cpu(capsys):
    from bench import gpu_train

    gpu_train.main(["--tiny", "--batch-sizes", "4", "2"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    matches = [LINE.match(line) for line in lines]
    # The official batch first, like for like; the larger batch against ours at that batch.
    assert [(m["name"], m["vs"]) for m in matches] == [("gpu-train-b2", "official"),
                                                       ("gpu-train-b4", "ours")], lines


def test_cli_rejects_an_unknown_benchmark():
    result = CliRunner().invoke(app, ["bench", "nope"])
    assert result.exit_code == 2
    assert all(name in result.output for name in BENCHMARKS)


def test_unknown_name_is_rejected_before_anything_runs():
    with pytest.raises(ValueError, match="unknown benchmark 'x'"):
        run_benchmarks(["x"], "tiny")
