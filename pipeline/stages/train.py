"""Stage `train`: fit one query mode (dqu, text, visual, combiner or sum) on the input shards.

Training is seeded by `train.seed` alone (top-level `seed` seeds the data), so a seed sweep
reuses every stage before this one. Validation data that the input shards do not carry is
read from the prepare folder: CIRR's subset members when `train.val_metric` names an
Rsubset@K, and the image captions when `train.val_hit_rule` is caption (Fashion200K).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.loader_images import LoaderImages
from pipeline.core.models import check_clip_weights
from pipeline.core.params import Params
from pipeline.core.protocol_data import image_captions, subset_members
from pipeline.core.report import StageReport
from pipeline.core.train_inputs import check_augment
from trainer.config import QUERY_MODES, val_metric_names
from trainer.models.saved import start_weights
from trainer.train.distributed import env_rank
from trainer.train.loop import train
from trainer.util.shards import list_shards


def run(params: Params, mode: str, inputs_dir: Path, out_dir: Path, resume: bool = True,
        prepare_dir: Path | None = None, pretrain_dir: Path | None = None) -> None:
    """Train one query mode; checkpoints, best weights and DVCLive logs go to out_dir.

    With `pretrain_dir` holding a checkpoint (the pretrain stage ran), CLIP starts from it
    instead of clip.pretrained.
    """
    if mode not in QUERY_MODES:
        raise ValueError(f"train: unknown query mode {mode!r}; use one of {list(QUERY_MODES)}")
    check_clip_weights(params.clip.pretrained)
    check_augment(params, Path(inputs_dir))
    subsets, captions = _protocol_data(params, prepare_dir)
    train(start_weights(params.clip, pretrain_dir), params.train, mode, params.train.seed,
          Path(inputs_dir), Path(out_dir), resume, val_subsets=subsets, val_captions=captions,
          image_maker=LoaderImages.from_params(params.render))
    if env_rank() != 0:
        return  # under torchrun, rank 0 alone writes outputs
    # Every train query in the input shards is trained on; the report says how many.
    report = StageReport(f"train {mode}")
    report.n_in = report.n_out = count_queries(Path(inputs_dir), "train")
    report.write(Path(out_dir) / "report.json")


def _protocol_data(params: Params, prepare_dir: Path | None
                   ) -> tuple[dict[str, list[str]] | None, dict[str, str] | None]:
    """CIRR subset members and image captions, each only when the val settings need it."""
    cfg = params.train
    wants_subsets = any(n.startswith("Rsubset@") for n in val_metric_names(cfg.val_metric))
    wants_captions = cfg.val_hit_rule == "caption"
    if (wants_subsets or wants_captions) and prepare_dir is None:
        raise ValueError("train.val_metric Rsubset@K / train.val_hit_rule caption need the "
                         "prepare folder: run `dqu train MODE --prepare artifacts/prepare ...`")
    subsets = subset_members(Path(prepare_dir), "val") if wants_subsets else None
    captions = image_captions(Path(prepare_dir)) if wants_captions else None
    return subsets, captions


def count_queries(inputs_dir: Path, split: str) -> int:
    """Number of `split` queries in the input shards (reads only the split column)."""
    return sum(
        pc.sum(pc.equal(pq.read_table(path, columns=["split"])["split"], split)).as_py() or 0
        for path in list_shards(inputs_dir, "queries")
    )
