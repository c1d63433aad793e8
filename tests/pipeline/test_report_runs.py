"""`dqu report`'s aggregation on hand-made runs: mean ± std worked out by hand."""

from __future__ import annotations

import math

import pytest

from pipeline.report_runs import (
    METRICS_FILE,
    PARAMS_FILE,
    csv_text,
    markdown,
    mean_std,
    runs_from_exp_show,
    summarise,
    unique_runs,
)


def _run(dataset: str, seed: int, metrics: dict, category: str | None = None,
         split: str = "val", mode: str = "dqu") -> dict:
    return {"name": f"{dataset}-{seed}",
            "params": {"prepare": {"dataset": dataset, "category": category},
                       "train": {"seed": seed}},
            "metrics": {split: {mode: metrics}}}


def _find(summaries, **fields):
    found = [s for s in summaries if all(getattr(s, k) == v for k, v in fields.items())]
    assert len(found) == 1, (fields, found)
    return found[0]


def test_mean_and_sample_std() -> None:
    # deviations -3, -1, +4 from 83: (9 + 1 + 16) / (3 - 1) = 13
    assert mean_std([80.0, 82.0, 87.0]) == pytest.approx((83.0, math.sqrt(13.0)))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_cirr_three_seeds_in_the_paper_column_order() -> None:
    runs = [_run("cirr", seed, {"Avg": avg, "R@5": r5, "R@1": 50.0, "Rsubset@1": 70.0})
            for seed, r5, avg in ((1, 80.0, 75.0), (2, 82.0, 76.0), (3, 87.0, 78.5))]
    summaries = summarise(runs)
    r5 = _find(summaries, metric="R@5")
    assert (r5.n, r5.mean, r5.std) == (3, pytest.approx(83.0), pytest.approx(math.sqrt(13.0)))
    avg = _find(summaries, metric="Avg")  # 75, 76, 78.5: mean 76.5, var (2.25+.25+4)/2
    assert (avg.mean, avg.std) == (pytest.approx(76.5), pytest.approx(math.sqrt(3.25)))
    table = markdown(summaries)
    assert "| mode | R@1 | R@5 | Rsubset@1 | Avg |" in table
    assert "| dqu | 50.00 ± 0.00 | 83.00 ± 3.61 | 70.00 ± 0.00 | 76.50 ± 1.80 |" in table


def test_fashioniq_categories_and_their_seed_paired_average() -> None:
    runs = [_run("fashioniq", 1, {"R@10": 50.0}, "dress"),
            _run("fashioniq", 2, {"R@10": 54.0}, "dress"),
            _run("fashioniq", 1, {"R@10": 40.0}, "shirt"),
            _run("fashioniq", 2, {"R@10": 46.0}, "shirt")]
    summaries = summarise(runs)
    dress = _find(summaries, category="dress")  # 50, 54: std sqrt(8)
    assert (dress.mean, dress.std) == (pytest.approx(52.0), pytest.approx(math.sqrt(8.0)))
    shirt = _find(summaries, category="shirt")  # 40, 46: std sqrt(18)
    assert (shirt.mean, shirt.std) == (pytest.approx(43.0), pytest.approx(math.sqrt(18.0)))
    # seed 1: (50 + 40) / 2 = 45; seed 2: (54 + 46) / 2 = 50 -> 47.5 ± sqrt(12.5)
    average = _find(summaries, category="Avg")
    assert (average.n, average.mean, average.std) == (2, pytest.approx(47.5),
                                                      pytest.approx(math.sqrt(12.5)))
    table = markdown(summaries)
    assert "| mode | dress R@10 | shirt R@10 | Avg R@10 |" in table
    assert "| dqu | 52.00 ± 2.83 | 43.00 ± 4.24 | 47.50 ± 3.54 |" in table
    assert csv_text(summaries).splitlines()[1] == "fashioniq,dress,val,dqu,R@10,2,52.0000,2.8284,"


def test_one_category_has_no_average() -> None:
    runs = [_run("fashioniq", s, {"R@10": 50.0 + s}, "dress") for s in (1, 2)]
    assert {s.category for s in summarise(runs)} == {"dress"}


def test_a_single_run_shows_no_spread() -> None:
    table = markdown(summarise([_run("demo", 0, {"R@10": 26.3}, split="test")]))
    assert "| dqu | 26.30 |" in table and "±" not in table


def _state(rev: str, metrics: dict | None, seed: int, name: str | None = None,
           error: dict | None = None) -> dict:
    data = None if error else {
        "rev": rev, "params": {PARAMS_FILE: {"data": {"prepare": {"dataset": "shoes"},
                                                     "train": {"seed": seed}}}},
        "metrics": {METRICS_FILE: {"data": metrics}} if metrics else {}}
    return {"rev": rev, "name": name, "data": data, "error": error, "experiments": None}


def test_exp_show_json_runs_skip_failed_and_unevaluated_and_drop_duplicates() -> None:
    first, second = {"test": {"dqu": {"R@10": 60.0}}}, {"test": {"dqu": {"R@10": 64.0}}}
    baseline = _state("a" * 40, None, 0, name="main")  # committed without metrics
    baseline["experiments"] = [
        {"revs": [_state("b" * 40, first, 1, name="seed-1")], "executor": None, "name": "seed-1"},
        {"revs": [_state("c" * 40, second, 2)], "executor": None, "name": None},
        {"revs": [_state("d" * 40, None, 3, error={"msg": "failed", "type": "x"})],
         "executor": None, "name": "broken"},
    ]
    workspace = _state("workspace", second, 2)  # the workspace holds the seed-2 run
    runs = unique_runs(runs_from_exp_show([workspace, baseline]))
    assert [r["name"] for r in runs] == ["workspace", "seed-1"]
    summary = _find(summarise(runs), metric="R@10")
    assert (summary.n, summary.mean, summary.std) == (2, pytest.approx(62.0),
                                                      pytest.approx(math.sqrt(8.0)))


def test_training_free_scores_are_rows_of_their_own() -> None:
    runs = [{"name": f"s{seed}",
             "params": {"prepare": {"dataset": "demo"}, "train": {"seed": seed}},
             "metrics": {"test": {"dqu": {"R@10": 28.0 + seed},
                                  "training_free": {"dqu": {"R@10": 1.0 + seed}}}}}
            for seed in (0, 1)]
    table = markdown(summarise(runs))
    assert "| dqu | 28.50 ± 0.71 |" in table
    assert "| training_free.dqu | 1.50 ± 0.71 |" in table


def test_runs_group_by_the_params_they_differ_in_other_than_the_seed() -> None:
    runs = []
    for model, base in (("A", 40.0), ("B", 60.0)):
        for seed in (0, 1, 2):
            run = _run("demo", seed, {"R@10": base + seed}, split="test")
            run["params"]["clip"] = {"model": model}
            run["params"]["seed"] = 0  # the same everywhere: no config of its own
            runs.append(run)
    summaries = summarise(runs)
    a = _find(summaries, mode="dqu", metric="R@10", config='clip.model=A')
    b = _find(summaries, mode="dqu", metric="R@10", config='clip.model=B')
    assert (a.n, a.mean, b.n, b.mean) == (3, 41.0, 3, 61.0)
    assert a.std == pytest.approx(1.0)
    table = markdown(summaries)
    assert '### demo (test, clip.model=A, 3 runs)' in table
    assert '### demo (test, clip.model=B, 3 runs)' in table
    assert csv_text(summaries).splitlines()[1].endswith(',clip.model=A')


def test_nested_geometry_and_training_free_rows_flatten_to_dotted_modes() -> None:
    metrics = {"dqu": {"R@10": 50.0}, "combiner": {"R@10": 40.0},
               "training_free": {"sum": {"R@10": 10.0}},
               "geometry": {"dqu": {"modality_gap": 0.5},
                            "training_free": {"sum": {"modality_gap": 0.25}}}}
    runs = [{"name": str(seed), "params": {"prepare": {"dataset": "demo"},
                                           "train": {"seed": seed}},
             "metrics": {"test": metrics}} for seed in (0, 1)]
    summaries = summarise(runs)
    modes = [s.mode for s in summaries]
    assert modes == ["dqu", "combiner", "training_free.sum", "geometry.dqu",
                     "geometry.training_free.sum"]
    assert _find(summaries, mode="geometry.training_free.sum").mean == 0.25
    assert all(s.config == "" and s.n == 2 for s in summaries)
    table = markdown(summaries)
    recall, geometry = table.split("### demo geometry (test, 2 runs)")
    assert recall.index("| dqu |") < recall.index("| combiner |") < recall.index(
        "| training_free.sum |")
    assert "modality_gap" not in recall and "| geometry.dqu | 0.500 ± 0.000 |" in geometry
