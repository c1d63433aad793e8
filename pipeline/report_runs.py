"""Mean ± std of finished runs (e.g. a `train.seed` sweep), in the paper's table layout.

A run is a plain dict: {"name": str, "params": params.yaml as a mapping, "metrics": the
evaluate stage's metrics.json, {split: {mode: {"R@K": percent, ...}}}}. Runs come from the
workspace's metrics file and from `dvc exp show --json` (a list of experiment states, each
{"rev", "name", "data": {"params": {file: {"data": ...}}, "metrics": {file: {"data": ...}}},
"experiments": [{"revs": [state, ...]}]}). Not in pipeline/core: that folder is a dependency
of every stage, and reporting must not invalidate their caches.

Runs are grouped by dataset, FashionIQ category, split, query mode and config: the params that
differ between the runs other than `train.seed` (so `dvc exp run --queue -S clip.model=A -S
clip.model=B ...` over seeds gives one table per backbone); std is the sample standard deviation
(n - 1; 0 for one run). Nested metrics (training_free, geometry) flatten to dotted modes such as
"training_free.dqu" and "geometry.training_free.sum". FashionIQ's category average pairs runs by
`train.seed`: each seed's mean over the categories is one value of the average.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainer.config import QUERY_MODES

METRICS_FILE = "artifacts/evaluate/metrics.json"
GEOMETRY, TRAINING_FREE = "geometry", "training_free"  # the evaluate stage's nested groups
PARAMS_FILE = "params.yaml"
CIRR_COLUMNS = ("R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2", "Rsubset@3", "Avg")
AVERAGE = "Avg"  # the FashionIQ category average / CIRR's (R@5 + Rsubset@1) / 2


@dataclass(frozen=True)
class Summary:
    """Mean ± std of one metric over the runs of one (dataset, category, split, mode)."""

    dataset: str
    category: str  # "" when the dataset has none; "Avg" for the FashionIQ average
    split: str
    mode: str
    metric: str
    n: int
    mean: float
    std: float
    config: str = ""  # "param=value, ..." of the params the runs differ in ("" when none)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0.0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _data(section: Mapping[str, Any] | None, file: str) -> Mapping[str, Any] | None:
    entry = (section or {}).get(file) or {}
    return None if entry.get("error") else entry.get("data")


def _run_of(state: Mapping[str, Any]) -> dict | None:
    data = state.get("data") or {}
    metrics = _data(data.get("metrics"), METRICS_FILE)
    if state.get("error") or not metrics:
        return None  # failed, queued or not evaluated yet
    rev = str(state.get("rev", ""))
    name = state.get("name") or (rev if rev == "workspace" else rev[:7])
    return {"name": name, "params": _data(data.get("params"), PARAMS_FILE) or {},
            "metrics": metrics}


def runs_from_exp_show(states: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Every finished run in `dvc exp show --json` output: baselines and their experiments."""
    runs = []
    for state in states:
        runs.append(_run_of(state))
        for exp_range in state.get("experiments") or []:
            runs.extend(_run_of(exp) for exp in exp_range.get("revs") or [])
    return [run for run in runs if run is not None]


def unique_runs(runs: Iterable[dict]) -> list[dict]:
    """Runs with distinct metrics: the workspace repeats its baseline or experiment row."""
    seen, out = set(), []
    for run in runs:
        key = json.dumps(run["metrics"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(run)
    return out


# Params that never make two runs a different config: the seed being swept, and the ones that
# name the dataset and category (their own grouping columns).
NOT_CONFIG = ("train.seed", "prepare.dataset", "prepare.category")


def _group(run: Mapping[str, Any]) -> tuple[str, str, Any]:
    params = run.get("params") or {}
    prepare = params.get("prepare") or {}
    seed = (params.get("train") or {}).get("seed")
    return str(prepare.get("dataset") or "?"), str(prepare.get("category") or ""), seed


def _flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted param names -> their values as text (strings as they are, others as JSON)."""
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_params(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return out


def configs(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per run, "param=value, ..." of the params in which the runs differ, other than NOT_CONFIG."""
    flat = [_flat_params(run.get("params") or {}) for run in runs]
    names = sorted({name for params in flat for name in params} - set(NOT_CONFIG))
    differing = [n for n in names if len({params.get(n, "null") for params in flat}) > 1]
    return [", ".join(f"{n}={params.get(n, 'null')}" for n in differing) for params in flat]


Key = tuple[str, str, str, str, str, str]  # dataset, category, split, mode, metric, config


def _values(runs: Sequence[dict]) -> dict[Key, dict[Any, float]]:
    """(dataset, category, split, mode, metric, config) -> {seed or run index: value}."""
    out: dict[Key, dict[Any, float]] = {}
    for index, (run, config) in enumerate(zip(runs, configs(runs), strict=True)):
        dataset, category, seed = _group(run)
        for split, modes in run["metrics"].items():
            for mode, metrics in _flat_modes(modes):
                for metric, value in metrics.items():
                    by_seed = out.setdefault((dataset, category, split, mode, metric, config),
                                             {})
                    # Same seed twice (runs differing in another param): keep both, unpaired.
                    tag = seed if seed is not None and seed not in by_seed else f"{seed}#{index}"
                    by_seed[tag] = value
    return out


def _flat_modes(modes: Mapping[str, Any], prefix: str = ""
                ) -> list[tuple[str, Mapping[str, float]]]:
    """(mode, metrics) pairs; nested groups give dotted modes ("geometry.training_free.dqu")."""
    out = []
    for mode, metrics in modes.items():
        nested = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
        leaves = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        if nested:
            out.extend(_flat_modes(nested, f"{prefix}{mode}."))
        if leaves:
            out.append((f"{prefix}{mode}", leaves))
    return out


def _category_averages(values: Mapping[tuple, dict[Any, float]]) -> list[Summary]:
    """FashionIQ "Avg" rows: per seed run in every category, the mean over the categories."""
    grouped: dict[tuple[str, str, str, str, str], dict[str, dict[Any, float]]] = {}
    for (dataset, category, split, mode, metric, config), by_seed in values.items():
        if dataset == "fashioniq" and category:
            grouped.setdefault((dataset, split, mode, metric, config), {})[category] = by_seed
    out = []
    for (dataset, split, mode, metric, config), per_category in grouped.items():
        if len(per_category) < 2:
            continue
        seeds = set.intersection(*(set(v) for v in per_category.values()))
        averages = [sum(v[s] for v in per_category.values()) / len(per_category)
                    for s in sorted(seeds, key=str)]
        if averages:
            out.append(Summary(dataset, AVERAGE, split, mode, metric, len(averages),
                               *mean_std(averages), config))
    return out


def summarise(runs: Iterable[dict]) -> list[Summary]:
    """Mean ± std per dataset, category, split, mode, metric and config (+ FashionIQ average)."""
    values = _values(list(runs))
    rows = [Summary(*key[:5], len(by_seed), *mean_std(list(by_seed.values())), key[5])
            for key, by_seed in values.items()]
    # stable sort: modes keep metrics.json's order (dqu, text, visual, combiner, sum, ...)
    return sorted(rows + _category_averages(values),
                  key=lambda r: (r.dataset, r.config, r.split, r.category == AVERAGE,
                                 r.category))


def _columns(dataset: str, rows: Sequence[Summary]) -> list[tuple[str, str]]:
    """(category, metric) column pairs of one dataset's table, in the paper's order."""
    metrics = list(dict.fromkeys(r.metric for r in rows))
    if dataset == "cirr":
        metrics = [m for m in CIRR_COLUMNS if m in metrics] + \
            [m for m in metrics if m not in CIRR_COLUMNS]
    categories = list(dict.fromkeys(r.category for r in rows))
    return [(c, m) for c in categories for m in metrics
            if any(r.category == c and r.metric == m for r in rows)]


def _mode_order(mode: str) -> tuple[int, int, str]:
    """Trained modes first, then training_free; each in QUERY_MODES order, others after."""
    name = mode.removeprefix(f"{GEOMETRY}.").removeprefix(f"{TRAINING_FREE}.")
    known = QUERY_MODES.index(name) if name in QUERY_MODES else len(QUERY_MODES)
    return (TRAINING_FREE in mode, known, name)


def markdown(summaries: Sequence[Summary]) -> str:
    """Tables per dataset, config and split (recall, then geometry): "mean ± std" per mode."""
    def table_of(s: Summary) -> tuple[str, str, str, bool]:
        return s.dataset, s.config, s.split, s.mode.startswith(f"{GEOMETRY}.")

    blocks = []
    for table in sorted(dict.fromkeys(map(table_of, summaries))):
        dataset, config, split, is_geometry = table
        rows = [s for s in summaries if table_of(s) == table]
        columns = _columns(dataset, rows)
        cell = {(r.mode, r.category, r.metric): r for r in rows}
        runs = max(r.n for r in rows)
        header = ["mode"] + [f"{c} {m}".strip() for c, m in columns]
        where = f"{split}, {config}" if config else split
        title = f"{dataset} {GEOMETRY}" if is_geometry else dataset
        lines = [f"### {title} ({where}, {runs} run{'s' if runs != 1 else ''})", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for mode in sorted(dict.fromkeys(r.mode for r in rows), key=_mode_order):
            cells = [mode]
            for category, metric in columns:
                found = cell.get((mode, category, metric))
                cells.append(_cell(found, 3 if is_geometry else 2))
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" if blocks else "no finished runs\n"


def _cell(found: Summary | None, digits: int = 2) -> str:
    # One run has no spread to show: "± 0.00" would claim a measured std of zero.
    if found is None:
        return "-"
    if found.n < 2:
        return f"{found.mean:.{digits}f}"
    return f"{found.mean:.{digits}f} ± {found.std:.{digits}f}"


def csv_text(summaries: Sequence[Summary]) -> str:
    """Long-format CSV: dataset, category, split, mode, metric, n, mean, std, config."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataset", "category", "split", "mode", "metric", "n", "mean", "std",
                     "config"])
    for s in summaries:
        writer.writerow([s.dataset, s.category, s.split, s.mode, s.metric, s.n,
                         f"{s.mean:.4f}", f"{s.std:.4f}", s.config])
    return out.getvalue()


def workspace_run(root: Path) -> dict | None:
    """The workspace's evaluated run (metrics file + params.yaml), or None before evaluate."""
    metrics_path = root / METRICS_FILE
    if not metrics_path.is_file():
        return None
    params = yaml.safe_load((root / PARAMS_FILE).read_text(encoding="utf-8")) or {}
    return {"name": "workspace", "params": params,
            "metrics": json.loads(metrics_path.read_text(encoding="utf-8"))}


def collect_runs(root: Path, experiments: bool = True) -> tuple[list[dict], str | None]:
    """Workspace run plus `dvc exp show --json` runs, deduplicated; and a warning, if any."""
    runs, warning = [], None
    if experiments:
        # `python -m dvc`: the dvc of this environment, whatever PATH holds.
        done = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=root,
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            runs = runs_from_exp_show(json.loads(done.stdout or "[]"))
        else:
            warning = f"dvc exp show failed, workspace only: {done.stderr.strip()[:200]}"
    workspace = workspace_run(root)
    return unique_runs(([workspace] if workspace else []) + runs), warning
