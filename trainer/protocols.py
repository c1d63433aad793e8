"""Benchmark-specific scoring on top of plain recall@K (metrics.py).

- CIRR Recall_subset@K: the target's rank among its query's `img_set.members`, the reference
  excluded; and the rc2 submission files of the test server.
- Fashion200K (TIRG): a retrieved image is a hit when its caption equals the target's caption.
Reference masking itself lives in metrics.py and is applied before anything here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

SUBMISSION_VERSION = "rc2"
SUBMISSION_TOP = {"recall": 50, "recall_subset": 3}


def subset_rankings(query_features: torch.Tensor, gallery_features: torch.Tensor,
                    subsets: Sequence[Sequence[int]], reference_index: torch.Tensor,
                    target_index: torch.Tensor | None = None) -> list[list[int]]:
    """Per query, its subset's gallery indices by descending score, the reference left out.

    Ties follow trainer.metrics' rule: the target (when given) after every member tied with
    it, other tied members in the subset's order.
    """
    rankings = []
    for q, members in enumerate(subsets):
        ref = int(reference_index[q])
        kept = [m for m in members if m >= 0 and m != ref]
        if target_index is not None:  # stable sorts below keep this order among ties
            kept.sort(key=lambda m, t=int(target_index[q]): m == t)
        if not kept:
            rankings.append([])
            continue
        index = torch.tensor(kept, dtype=torch.long, device=gallery_features.device)
        scores = gallery_features[index].float() @ query_features[q].float().to(index.device)
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        rankings.append([kept[i] for i in order])
    return rankings


def recall_subset(rankings: Sequence[Sequence[int]], target_index: Sequence[int],
                  ks: Sequence[int]) -> dict[str, float]:
    """Recall_subset@K in percent, keyed "Rsubset@K"."""
    n = len(rankings)
    return {
        f"Rsubset@{k}": 100.0 * sum(int(t) in r[:k] for r, t in zip(rankings, target_index,
                                                                     strict=True)) / n
        if n else 0.0
        for k in ks
    }


def caption_recall(top_ids: Sequence[Sequence[str]], target_captions: Sequence[str | None],
                   caption_of: Mapping[str, str], ks: Sequence[int]) -> dict[str, float]:
    """Recall@K in percent where any retrieved image whose caption equals the target's counts."""
    n = len(top_ids)
    hits = {k: 0 for k in ks}
    for top, wanted in zip(top_ids, target_captions, strict=True):
        captions = [caption_of.get(i) for i in top]
        for k in ks:
            hits[k] += wanted is not None and wanted in captions[:k]
    return {f"R@{k}": 100.0 * hits[k] / n if n else 0.0 for k in ks}


def cirr_average(metrics: Mapping[str, float]) -> float:
    """CIRR's headline number: (R@5 + Recall_subset@1) / 2."""
    return (metrics["R@5"] + metrics["Rsubset@1"]) / 2.0


def cirr_submissions(pair_ids: Sequence[str], top_ids: Sequence[Sequence[str]],
                     subset_top_ids: Sequence[Sequence[str]]) -> dict[str, dict]:
    """The two rc2 test-server files: {"recall": {...}, "recall_subset": {...}}, each holding
    "version", "metric" and pairid -> ranked image names (top 50 / top 3)."""
    files = {}
    for metric, ranked in (("recall", top_ids), ("recall_subset", subset_top_ids)):
        top = SUBMISSION_TOP[metric]
        body = {"version": SUBMISSION_VERSION, "metric": metric}
        for pair_id, names in zip(pair_ids, ranked, strict=True):
            if len(names) < top:
                raise ValueError(f"pairid {pair_id}: only {len(names)} ranked images for "
                                 f"{metric}, the server needs {top}")
            body[str(int(pair_id))] = list(names[:top])
        files[metric] = body
    return files


def submission_name(split: str, metric: str) -> str:
    """File name the CIRR server expects, e.g. test1_pred_ranks_recall_subset.json."""
    return f"{split}_pred_ranks_{metric}.json"

