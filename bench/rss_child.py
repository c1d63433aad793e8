"""Subprocess of `bench eval-rss`: evaluate a small random CLIP on a split, print peak RSS.

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

    from trainer.config import ClipConfig
    from trainer.evaluate import evaluate
    from trainer.loop import build_model

    imports_mb = peak_rss_mb()  # interpreter, torch, open_clip: paid before any data is read
    # A benchmark-only backbone: registered here, not in trainer/model_configs.
    open_clip.add_model_config(Path(config_dir))
    torch.manual_seed(0)
    model = build_model(ClipConfig(model=model_name), "dqu", 0.5, 10.0, torch.device("cpu"))
    result = evaluate(model, Path(inputs_dir), "val", (1, 10, 50), 256, "cpu")
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "imports_mb": imports_mb,
                      "queries": result.num_queries}))


if __name__ == "__main__":
    main()
