"""Stage `train`: fit the DQU-CIR model in one query mode (dqu, text or visual) on input shards."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.models import check_clip_weights
from pipeline.core.params import Params
from pipeline.core.report import StageReport
from trainer.config import QUERY_MODES
from trainer.distributed import env_rank
from trainer.loop import train
from trainer.shards import list_shards


def run(params: Params, mode: str, inputs_dir: Path, out_dir: Path, resume: bool = True) -> None:
    """Train one query mode; checkpoints, best weights and DVCLive logs go to out_dir."""
    if mode not in QUERY_MODES:
        raise ValueError(f"train: unknown query mode {mode!r}; use one of {list(QUERY_MODES)}")
    check_clip_weights(params.clip.pretrained)
    train(params.clip, params.train, mode, params.seed, Path(inputs_dir), Path(out_dir), resume)
    if env_rank() != 0:
        return  # under torchrun, rank 0 alone writes outputs
    # Every train query in the input shards is trained on; the report says how many.
    report = StageReport(f"train {mode}")
    report.n_in = report.n_out = count_queries(Path(inputs_dir), "train")
    report.write(Path(out_dir) / "report.json")


def count_queries(inputs_dir: Path, split: str) -> int:
    """Number of `split` queries in the input shards (reads only the split column)."""
    return sum(
        pc.sum(pc.equal(pq.read_table(path, columns=["split"])["split"], split)).as_py() or 0
        for path in list_shards(inputs_dir, "queries")
    )
