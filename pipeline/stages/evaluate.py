"""Stage `evaluate`: Recall@K of every trained query mode, scored by the dataset's protocol.

metrics.json is {split: {mode: {"R@K": percent, ...}}}. Protocol keys come from params:
`evaluate.subset_ks` adds CIRR's "Rsubset@K" (and "Avg" = (R@5 + Rsubset@1) / 2),
`evaluate.hit_rule: caption` scores R@K by Fashion200K's caption equality, and
`evaluate.submission_split` writes CIRR's rc2 test-server files under submission/<mode>/.
Per-query data that the input shards do not carry (subset members, image captions) is read
from the prepare folder. per_query.parquet holds, per split, query and mode, the target's
exact rank (other gallery items scoring >= the target, the reference masked; the gallery
size when the target is missing) and the top-10 gallery image ids in the same tie order:
higher score first, then the target after the items tied with it, then lower gallery index.
Ranks and ids come from the same scores (exact float64 ones on CPU, float32 elsewhere), so a
target with rank r < 10 is top10[r].
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import torch

from pipeline.core.params import EvaluateParams, Params
from pipeline.core.report import StageReport
from pipeline.core.shards import CAPTIONS, TRIPLETS, read_table, write_table
from trainer import protocols
from trainer.atomic import write_json
from trainer.config import QUERY_MODES
from trainer.evaluate import (
    EvalResult,
    EvalSplit,
    encode_split,
    encode_split_parts,
    encode_split_weighted,
    load_eval_split,
    rank_queries,
)
from trainer.fusion import DQUModel
from trainer.loop import build_model, load_trained
from trainer.pretrain import start_weights
from trainer.runtime import resolve_device

IMAGE_CAPTIONS = "image_captions.parquet"  # written by adapters whose protocol needs it
PER_QUERY_TOP = 10
PER_QUERY = pa.schema([("split", pa.string()), ("pair_id", pa.string()), ("mode", pa.string()),
                       ("target_rank", pa.int64()), ("top10", pa.list_(pa.string())),
                       ("lambda", pa.float64())])  # the text weight; null unless mode dqu
TRAINING_FREE = "training_free"
TRAINING_FREE_LAMBDA = 0.5  # the paper's training-free DQU: f_t and f_v weighted equally


def run(params: Params, inputs_dir: Path, train_dir: Path, out_dir: Path,
        prepare_dir: Path | None = None, pretrain_dir: Path | None = None) -> dict:
    """Write metrics.json, recall_curve.json and, for CIRR test1, the submission files.

    metrics.json also holds `training_free`: each query mode scored with the encoders before
    fine-tuning (the pretrain stage's checkpoint, else clip.pretrained) and no fusion head,
    DQU as f_t and f_v weighted equally.
    """
    cfg = params.evaluate
    _check_protocol(cfg, prepare_dir)
    device = resolve_device(cfg.device)
    curve_ks = sorted({1, 5, 10, 20, 50, 100, *cfg.ks})
    data = load_eval_split(Path(inputs_dir), cfg.split)
    if not data.gallery_ids:
        raise ValueError(f"split {cfg.split!r} has an empty gallery in {inputs_dir}; "
                         "check evaluate.split against prepare/summary.json")
    extra = _ProtocolData(cfg, prepare_dir)
    metrics: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, float]] = {}
    per_query: list[dict] = []
    for mode in QUERY_MODES:
        model = load_trained(
            params.clip, mode, params.train.dropout, Path(train_dir) / mode, device
        )
        scored = score_split(model, data, cfg, curve_ks, extra, device,
                             per_query=per_query, mode=mode)
        curves[mode] = {k: v for k, v in scored.items() if k.startswith("R@")}
        metrics[mode] = {
            key: round(value, 4) for key, value in scored.items()
            if key not in curves[mode] or int(key[2:]) in cfg.ks
        }
        print(
            f"[evaluate] {cfg.split} {mode}: "
            + "  ".join(f"{k}={v:.2f}" for k, v in metrics[mode].items())
        )
        if cfg.submission_split:
            write_submission(model, Path(inputs_dir), cfg, extra, device,
                             Path(out_dir) / "submission" / mode)
    free = training_free(params, data, curve_ks, extra, device, pretrain_dir)
    out_dir = Path(out_dir)
    write_json(out_dir / "metrics.json", {cfg.split: {**metrics, TRAINING_FREE: free}})
    rows = [
        {"k": k, **{mode: round(curves[mode][f"R@{k}"], 4) for mode in QUERY_MODES}}
        for k in curve_ks
    ]
    write_json(out_dir / "recall_curve.json", rows)
    write_table(pa.Table.from_pylist(per_query, schema=PER_QUERY), out_dir / "per_query.parquet",
                PER_QUERY)
    # Every query of the split is scored by every mode (a target outside the gallery is a miss).
    report = StageReport("evaluate")
    report.n_in = report.n_out = len(data.queries)
    report.write(out_dir / "report.json")
    return metrics


class _ProtocolData:
    """Subset members per (split, pair_id) and per-image captions, read once from prepare/."""

    def __init__(self, cfg: EvaluateParams, prepare_dir: Path | None) -> None:
        self.subsets: dict[tuple[str, str], list[str]] = {}
        self.captions: dict[str, str] = {}
        if prepare_dir is None:
            return
        if cfg.subset_ks or cfg.submission_split:
            table = read_table(Path(prepare_dir) / "triplets.parquet", TRIPLETS)
            for split, pair, subset in zip(table["split"].to_pylist(),
                                           table["pair_id"].to_pylist(),
                                           table["subset"].to_pylist(), strict=True):
                if subset is not None:
                    self.subsets[(split, pair)] = subset
        if cfg.hit_rule == "caption":
            table = read_table(Path(prepare_dir) / IMAGE_CAPTIONS, CAPTIONS)
            self.captions = dict(zip(table["image_id"].to_pylist(),
                                     table["caption"].to_pylist(), strict=True))

    def subset_index(self, data: EvalSplit) -> list[list[int]]:
        """Gallery positions of each query's subset members (error naming a query without)."""
        position = {image_id: i for i, image_id in enumerate(data.gallery_ids)}
        out = []
        for pair in data.queries.pair_ids:
            members = self.subsets.get((data.queries.split, pair))
            if members is None:
                raise ValueError(f"query {data.queries.split}/{pair} has no subset members in "
                                 "prepare/triplets.parquet; evaluate.subset_ks needs CIRR data")
            out.append([position.get(m, -1) for m in members])
        return out


def score_split(model: DQUModel, data: EvalSplit, cfg: EvaluateParams, curve_ks: list[int],
                extra: _ProtocolData, device: torch.device, *,
                per_query: list[dict] | None = None, mode: str = "") -> dict[str, float]:
    """R@K for every curve K under the hit rule, plus the protocol's extra keys.

    With `per_query`, appends one PER_QUERY row (exact rank, top-10 ids) per query.
    """
    queries, lam, gallery = encode_split_weighted(model, data, cfg.batch_size, device)
    return score_features(queries, gallery, data, cfg, curve_ks, extra, per_query=per_query,
                          mode=mode, lam=lam)


def training_free(params: Params, data: EvalSplit, curve_ks: list[int], extra: _ProtocolData,
                  device: torch.device, pretrain_dir: Path | None) -> dict[str, dict]:
    """R@K of text, visual and lambda = 0.5 queries from the encoders before fine-tuning."""
    cfg = params.evaluate
    model = build_model(start_weights(params.clip, pretrain_dir), "dqu", params.train.dropout,
                        1.0, device)
    text, visual, gallery = encode_split_parts(model, data, cfg.batch_size, device)
    if text is None:
        return {}
    fused = torch.nn.functional.normalize(
        TRAINING_FREE_LAMBDA * text + (1 - TRAINING_FREE_LAMBDA) * visual, dim=-1)
    out = {}
    for mode, queries in {"dqu": fused, "text": text, "visual": visual}.items():
        scored = score_features(queries, gallery, data, cfg, curve_ks, extra)
        out[mode] = {k: round(v, 4) for k, v in scored.items()
                     if not k.startswith("R@") or int(k[2:]) in cfg.ks}
        print(f"[evaluate] {cfg.split} training-free {mode}: "
              + "  ".join(f"{k}={v:.2f}" for k, v in out[mode].items()))
    return out


def score_features(queries: torch.Tensor, gallery: torch.Tensor, data: EvalSplit,
                   cfg: EvaluateParams, curve_ks: list[int], extra: _ProtocolData, *,
                   per_query: list[dict] | None = None, mode: str = "",
                   lam: torch.Tensor | None = None) -> dict[str, float]:
    """score_split's scoring of already encoded queries and gallery."""
    # The caption hit rule reads the top max(K) ids; per_query.parquet the top 10.
    top_n = max(curve_ks) if cfg.hit_rule == "caption" else 0
    if per_query is not None:
        top_n = max(top_n, PER_QUERY_TOP)
    result = rank_queries(queries, gallery, data, curve_ks, top_n, cfg.batch_size,
                          exact_ranks=per_query is not None)
    if per_query is not None:
        weights = [None] * len(result.pair_ids) if lam is None else lam.cpu().tolist()
        per_query.extend(
            {"split": result.split, "pair_id": pair, "mode": mode, "target_rank": rank,
             "top10": top[:PER_QUERY_TOP], "lambda": weight}
            for pair, rank, top, weight in zip(result.pair_ids, result.target_ranks,
                                               result.top_ids, weights, strict=True))
    scored = dict(result.metrics)
    if cfg.hit_rule == "caption":
        targets = [extra.captions.get(t) for t in data.queries.target_ids]
        scored = protocols.caption_recall(result.top_ids, targets, extra.captions, curve_ks)
    if cfg.subset_ks:
        rankings = protocols.subset_rankings(queries, gallery, extra.subset_index(data),
                                             data.reference_index, data.target_index)
        scored |= protocols.recall_subset(rankings, data.target_index.tolist(), cfg.subset_ks)
        if 1 in cfg.subset_ks:
            scored["Avg"] = protocols.cirr_average(scored)
    return scored


def write_submission(model: DQUModel, inputs_dir: Path, cfg: EvaluateParams,
                     extra: _ProtocolData, device: torch.device, folder: Path) -> EvalResult:
    """Rank the submission split (no targets needed) and write its two rc2 files."""
    split = cfg.submission_split
    data = load_eval_split(inputs_dir, split)
    queries, gallery = encode_split(model, data, cfg.batch_size, device)
    top_n = protocols.SUBMISSION_TOP["recall"]
    result = rank_queries(queries, gallery, data, [1], top_n, cfg.batch_size)
    rankings = protocols.subset_rankings(queries, gallery, extra.subset_index(data),
                                         data.reference_index)
    subset_names = [[data.gallery_ids[i] for i in r] for r in rankings]
    files = protocols.cirr_submissions(result.pair_ids, result.top_ids, subset_names)
    for metric, body in files.items():
        write_json(folder / protocols.submission_name(split, metric), body)
    return result


def _check_protocol(cfg: EvaluateParams, prepare_dir: Path | None) -> None:
    needs = cfg.subset_ks or cfg.submission_split or cfg.hit_rule == "caption"
    if needs and prepare_dir is None:
        raise ValueError("evaluate.subset_ks / hit_rule: caption / submission_split need the "
                         "prepare folder: run `dqu evaluate --prepare artifacts/prepare ...`")
