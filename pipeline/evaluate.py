"""Stage `evaluate`: Recall@K of every trained query mode on the evaluation split."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_json
from pipeline.config import Params
from trainer.config import QUERY_MODES
from trainer.evaluate import evaluate
from trainer.loop import load_trained
from trainer.runtime import resolve_device


def run(params: Params, inputs_dir: Path, train_dir: Path, out_dir: Path) -> dict:
    """Write metrics.json ({mode: {R@K: percent}}) and recall_curve.json for `dvc plots`."""
    cfg = params.evaluate
    device = resolve_device(cfg.device)
    metrics: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, float]] = {}
    curve_ks = sorted({1, 5, 10, 20, 50, 100, *cfg.ks})
    for mode in QUERY_MODES:
        model = load_trained(
            params.clip, mode, params.train.dropout, Path(train_dir) / mode, device
        )
        result = evaluate(model, Path(inputs_dir), cfg.split, curve_ks, cfg.batch_size, device)
        metrics[mode] = {f"R@{k}": round(result.metrics[f"R@{k}"], 4) for k in cfg.ks}
        curves[mode] = result.metrics
        print(
            f"[evaluate] {cfg.split} {mode}: "
            + "  ".join(f"{k}={v:.2f}" for k, v in metrics[mode].items())
        )
    out_dir = Path(out_dir)
    write_json(out_dir / "metrics.json", {cfg.split: metrics})
    rows = [
        {"k": k, **{mode: round(curves[mode][f"R@{k}"], 4) for mode in QUERY_MODES}}
        for k in curve_ks
    ]
    write_json(out_dir / "recall_curve.json", rows)
    return metrics
