"""Subprocess of `bench eval-rss`: the evaluate stage's flow on a split, then its peak RSS.

A module of its own so the measured process imports only what evaluation needs (the
benchmark helpers pull in the pipeline stages and keyword models, which evaluation never does).

    python -m bench.rss_child INPUTS_DIR CONFIG_DIR MODEL_NAME
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory, in MiB.

    Linux: VmHWM from /proc/self/status. getrusage's ru_maxrss is not used there because the
    kernel carries the parent's peak across fork + exec into it, so a child of a big parent
    would report the parent's peak. Elsewhere: ru_maxrss (bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def main(argv: list[str] | None = None) -> None:
    """Evaluate on the `val` split of INPUTS_DIR; print {"peak_rss_mb", "imports_mb", ...}."""
    inputs_dir, config_dir, model_name = (argv or sys.argv[1:])[:3]
    import open_clip
    import torch

    from pipeline.core.params import EvaluateParams
    from pipeline.stages.evaluate import PER_QUERY_TOP, Scoring, per_query_rows
    from trainer.config import ClipConfig
    from trainer.eval.embed import embed
    from trainer.eval.split import load_eval_split
    from trainer.models.saved import build_model

    imports_mb = peak_rss_mb()  # interpreter, torch, open_clip: paid before any data is read
    # A benchmark-only backbone: registered here, not in trainer/models/configs.
    open_clip.add_model_config(Path(config_dir))
    torch.manual_seed(0)
    model = build_model(ClipConfig(model=model_name), "dqu", 0.5, 10.0, torch.device("cpu"))
    # The evaluate stage's flow for one mode: embed -> rank (per-query top 10) -> score.
    cfg = EvaluateParams()
    split = load_eval_split(Path(inputs_dir), "val")
    scoring = Scoring(cfg, None, split, sorted({1, 5, 10, 20, 50, 100, *cfg.ks}))
    features = embed(model, split, cfg.batch_size, torch.device("cpu"))
    rankings = scoring.rank(features, PER_QUERY_TOP)
    rows = per_query_rows(split, "dqu", rankings, features.weights)
    scoring.score(rankings)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "imports_mb": imports_mb,
                      "queries": len(rows)}))


if __name__ == "__main__":
    main()
