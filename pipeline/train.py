"""Stage `train`: fit the DQU-CIR model in one query mode (dqu, text or visual) on input shards."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from trainer.config import QUERY_MODES
from trainer.loop import train


def run(params: Params, mode: str, inputs_dir: Path, out_dir: Path, resume: bool = True) -> None:
    """Train one query mode; checkpoints, best weights and DVCLive logs go to out_dir."""
    if mode not in QUERY_MODES:
        raise ValueError(f"train: unknown query mode {mode!r}; use one of {list(QUERY_MODES)}")
    train(params.clip, params.train, mode, params.seed, Path(inputs_dir), Path(out_dir), resume)
