"""Stage `evaluate`: Recall@K of every trained query mode, scored by the dataset's protocol.

metrics.json is {split: {mode: {"R@K": percent, ...}, "training_free": {mode: ...}, "geometry":
{mode: {...}, "training_free": {mode: {...}}}}} (trainer.eval.geometry says what the geometry
numbers mean). Modes combiner and sum read the raw query (modification text and reference image,
trainer.data.raw); the others read the unified queries. Protocols come from params through the
registry in trainer.eval.protocols: `evaluate.hit_rule` picks R@K's hit rule (target, or
Fashion200K's caption equality), `evaluate.subset_ks` adds CIRR's "Rsubset@K" (and "Avg" = (R@5
+ Rsubset@1) / 2), and `evaluate.submission_split` writes CIRR's rc2 test-server files under
submission/<mode>/. Per-query data that the input shards do not carry (subset members, image
captions) is read from the prepare folder. Every mode runs the one flow of trainer.eval: embed
-> rank -> score. per_query.parquet holds, per split, query and mode, the target's exact rank
(other gallery items scoring >= the target, the reference masked; the gallery size when the
target is missing) and the top-10 gallery image ids in the same tie order: higher score first,
then the target after the items tied with it, then lower gallery index. Ranks and ids come from
the same exact scores, so a target with rank r < 10 is top10[r].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from pipeline.core.params import EvaluateParams, Params
from pipeline.core.protocol_data import image_captions, subset_members
from pipeline.core.report import StageReport
from pipeline.core.shards import write_table
from trainer.config import QUERY_MODES
from trainer.eval.embed import SplitFeatures, embed, embed_query_parts, features_from_parts
from trainer.eval.geometry import geometry
from trainer.eval.protocols import (
    CirrSubmission,
    Protocol,
    protocols_for,
    score,
    subsets_needed,
    top_needed,
)
from trainer.eval.rank import Rankings, rank
from trainer.eval.split import EvalSplit, load_eval_split, raw_split, subset_positions
from trainer.models.fusion import DQUModel
from trainer.models.saved import build_model, load_trained, start_weights
from trainer.runtime import Precision, resolve_device
from trainer.util.atomic import write_json

PER_QUERY_TOP = 10
PER_QUERY = pa.schema([("split", pa.string()), ("pair_id", pa.string()), ("mode", pa.string()),
                       ("target_rank", pa.int64()), ("top10", pa.list_(pa.string())),
                       ("lambda", pa.float64())])  # text weight: dqu's lambda, combiner's s
GEOMETRY = "geometry"
TRAINING_FREE = "training_free"
TRAINING_FREE_LAMBDA = 0.5  # the paper's training-free DQU: f_t and f_v weighted equally


class Scoring:
    """One split's protocols and the subset positions they read, built once for every mode."""

    def __init__(self, cfg: EvaluateParams, prepare_dir: Path | None, split: EvalSplit,
                 curve_ks: list[int]) -> None:
        captions = (image_captions(Path(prepare_dir)) if cfg.hit_rule == "caption"
                    else None)
        self.split = split
        self.protocols: list[Protocol] = protocols_for(curve_ks, cfg.hit_rule, cfg.subset_ks,
                                                       captions)
        self.subsets = (subset_positions(split, subset_members(Path(prepare_dir), split.name))
                        if subsets_needed(self.protocols) else None)

    def rank(self, features: SplitFeatures, top_n: int = 0) -> Rankings:
        """The split's rankings with what the protocols read (and at least `top_n` ids)."""
        return rank(features, self.split, max(top_n, top_needed(self.protocols)), self.subsets)

    def score(self, rankings: Rankings) -> dict[str, float]:
        """Every protocol's metrics."""
        return score(rankings, self.split, self.protocols)


def run(params: Params, inputs_dir: Path, train_dir: Path, out_dir: Path,
        prepare_dir: Path | None = None, pretrain_dir: Path | None = None) -> dict:
    """Write metrics.json, recall_curve.json and, for CIRR test1, the submission files.

    metrics.json also holds `training_free`: the modes that need no trained head (dqu as f_t
    and f_v weighted equally by the model's own fuse, text, visual, sum) scored with the
    encoders before fine-tuning (the pretrain stage's checkpoint, else clip.pretrained), and
    `geometry` for every mode and training-free row (trainer.eval.geometry).
    """
    cfg = params.evaluate
    _check_protocol(cfg, prepare_dir)
    device = resolve_device(cfg.device)
    curve_ks = sorted({1, 5, 10, 20, 50, 100, *cfg.ks})
    split = load_eval_split(Path(inputs_dir), cfg.split)
    if not split.gallery_ids:
        raise ValueError(f"split {cfg.split!r} has an empty gallery in {inputs_dir}; "
                         "check evaluate.split against prepare/summary.json")
    scoring = Scoring(cfg, prepare_dir, split, curve_ks)
    raw = raw_split(split, Path(inputs_dir))  # the raw query, for the feature-level baselines
    metrics: dict[str, dict[str, float]] = {}
    shapes: dict[str, dict] = {}
    curves: dict[str, dict[str, float]] = {}
    per_query: list[dict] = []
    for mode in QUERY_MODES:
        model = load_trained(params.clip, mode, params.train.dropout, Path(train_dir) / mode,
                             device)
        result = evaluate_mode(model, mode, scoring, raw, cfg, device)
        per_query.extend(result.per_query)
        curves[mode] = {k: v for k, v in result.scored.items() if k.startswith("R@")}
        metrics[mode], shapes[mode] = result.metrics, result.geometry
        if cfg.submission_split:
            write_submission(model, Path(inputs_dir), cfg, Path(prepare_dir), device,
                             Path(out_dir) / "submission" / mode)
    free, shapes[TRAINING_FREE] = training_free(params, scoring, raw, device, pretrain_dir)
    out_dir = Path(out_dir)
    write_json(out_dir / "metrics.json",
               {cfg.split: {**metrics, TRAINING_FREE: free, GEOMETRY: shapes}})
    rows = [
        {"k": k, **{mode: round(curves[mode][f"R@{k}"], 4) for mode in QUERY_MODES}}
        for k in curve_ks
    ]
    write_json(out_dir / "recall_curve.json", rows)
    write_table(pa.Table.from_pylist(per_query, schema=PER_QUERY), out_dir / "per_query.parquet",
                PER_QUERY)
    # Every query of the split is scored by every mode (a target outside the gallery is a miss).
    report = StageReport("evaluate")
    report.n_in = report.n_out = len(split.queries)
    report.write(out_dir / "report.json")
    return metrics


@dataclass
class ModeResult:
    """One trained mode on one split: every protocol's scores, the reported metrics, geometry."""

    scored: dict[str, float]  # every protocol key, unrounded (the recall curve reads R@K)
    metrics: dict[str, float]  # what metrics.json reports
    geometry: dict
    per_query: list[dict]  # PER_QUERY rows


def evaluate_mode(model: DQUModel, mode: str, scoring: Scoring, raw: EvalSplit,
                  cfg: EvaluateParams, device: torch.device) -> ModeResult:
    """One mode's whole evaluation on the split: embed -> rank (top 10 per query) -> score."""
    split = scoring.split
    features = embed(model, raw if model.method.raw_inputs else split, cfg.batch_size, device)
    rankings = scoring.rank(features, PER_QUERY_TOP)
    rows = per_query_rows(split, mode, rankings, features.weights)
    scored = scoring.score(rankings)
    result = ModeResult(scored, _reported(scored, cfg.ks), _geometry(features, split, rankings),
                        rows)
    _say(f"{cfg.split} {mode}", result.metrics)
    _say(f"{cfg.split} {mode} geometry", result.geometry)
    return result


def _geometry(features: SplitFeatures, split: EvalSplit, rankings: Rankings) -> dict:
    """trainer.eval.geometry of a mode, its nearest images from the ranking's top 1."""
    if rankings.top is None or rankings.top.shape[1] == 0:
        return {}
    return geometry(features, split, rankings.top[:, 0])


def _reported(scored: dict[str, float], ks: list[int]) -> dict[str, float]:
    """The metrics.json entries: R@K for the evaluate.ks, every other protocol key, rounded."""
    return {key: round(value, 4) for key, value in scored.items()
            if not key.startswith("R@") or int(key[2:]) in ks}


def _say(what: str, metrics: dict[str, float]) -> None:
    print(f"[evaluate] {what}: " + "  ".join(f"{k}={v:.2f}" for k, v in metrics.items()))


def per_query_rows(split: EvalSplit, mode: str, rankings: Rankings,
                   weights: torch.Tensor | None) -> list[dict]:
    """One PER_QUERY row per query: exact target rank, top-10 ids and lambda (dqu)."""
    lam = [None] * len(split.queries) if weights is None else weights.cpu().tolist()
    name = split.name
    return [{"split": name, "pair_id": pair, "mode": mode, "target_rank": rank_,
             "top10": top[:PER_QUERY_TOP], "lambda": weight}
            for pair, rank_, top, weight in zip(split.queries.pair_ids,
                                                rankings.target_ranks.tolist(),
                                                rankings.top_ids(), lam, strict=True)]


def training_free(params: Params, scoring: Scoring, raw: EvalSplit, device: torch.device,
                  pretrain_dir: Path | None) -> tuple[dict[str, dict], dict[str, dict]]:
    """Recall and geometry of the modes that need no training, with the encoders before it.

    dqu is f_t and f_v weighted equally (lambda = 0.5), text and visual one unified query each,
    sum norm(f_I + f_T) of the raw query; the combiner has no training-free form. Returns
    ({mode: metrics}, {mode: geometry}).
    """
    cfg = params.evaluate
    start = start_weights(params.clip, pretrain_dir)
    model = build_model(start, "dqu", params.train.dropout, 1.0, device,
                        fixed_lambda=TRAINING_FREE_LAMBDA)
    features = embed(model, scoring.split, cfg.batch_size, device)
    if features.text is None:
        return {}, {}
    # The same encoders in the sum's fusion: no second load of the start weights.
    summed = DQUModel(model.clip, features.gallery.shape[1], "sum").to(device)
    text, visual = embed_query_parts(summed, raw.queries, raw.meta, cfg.batch_size, device,
                                     Precision(None, False))
    queries = {"dqu": features, "text": features.with_queries(features.text),
               "visual": features.with_queries(features.visual),
               # the same encoders embed the gallery alike: reuse it
               "sum": features_from_parts(summed, text, visual, features.gallery,
                                          cfg.batch_size)}
    out, shapes = {}, {}
    for mode, mode_features in queries.items():
        rankings = scoring.rank(mode_features, 1)
        out[mode] = _reported(scoring.score(rankings), cfg.ks)
        shapes[mode] = _geometry(mode_features, scoring.split, rankings)
        _say(f"{cfg.split} training-free {mode}", out[mode])
    return out, shapes


def write_submission(model: torch.nn.Module, inputs_dir: Path, cfg: EvaluateParams,
                     prepare_dir: Path, device: torch.device, folder: Path) -> Rankings:
    """Rank the submission split (no targets needed) and write its two rc2 files."""
    split = load_eval_split(inputs_dir, cfg.submission_split)
    if model.method.raw_inputs:
        split = raw_split(split, inputs_dir)
    protocol = CirrSubmission(cfg.submission_split)
    subsets = subset_positions(split, subset_members(prepare_dir, split.name))
    rankings = rank(embed(model, split, cfg.batch_size, device), split, protocol.top_n, subsets)
    for name, body in protocol.files(rankings, split).items():
        write_json(folder / name, body)
    return rankings


def _check_protocol(cfg: EvaluateParams, prepare_dir: Path | None) -> None:
    needs = cfg.subset_ks or cfg.submission_split or cfg.hit_rule == "caption"
    if needs and prepare_dir is None:
        raise ValueError("evaluate.subset_ks / hit_rule: caption / submission_split need the "
                         "prepare folder: run `dqu evaluate --prepare artifacts/prepare ...`")
