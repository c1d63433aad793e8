"""Scoring protocols: rankings -> metrics, each benchmark's rule as an object from a registry.

- `target` (HIT_RULES): R@K, a hit when the target is in the top K (FashionIQ, Shoes, CIRR).
- `caption` (HIT_RULES): Fashion200K's TIRG rule, a hit when any of the top K has the target's
  caption.
- `SubsetRecall`: CIRR's Recall_subset@K over each query's `img_set.members` (reference
  excluded); `score` adds CIRR's headline Avg = (R@5 + Rsubset@1) / 2 when both are scored.
- `CirrSubmission`: the two rc2 test-server files of CIRR test1 (no targets needed).

`protocols_for(...)` picks them from the settings (what params.yaml's evaluate and train
sections name), `score(rankings, split, protocols)` runs them; a protocol says how many top ids
(`top_n`) and whether subset rankings (`needs_subsets`) it reads, so ranking computes only that.
Reference masking is done by the ranking before anything here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from trainer.eval.rank import Rankings
from trainer.eval.split import EvalSplit

SUBMISSION_VERSION = "rc2"
SUBMISSION_TOP = {"recall": 50, "recall_subset": 3}


def recall_from_ranks(ranks: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """Recall@K in percent from 0-based target ranks, keyed "R@K"."""
    if ranks.numel() == 0:
        return {f"R@{k}": 0.0 for k in ks}
    return {f"R@{k}": float((ranks < k).double().mean().item() * 100.0) for k in ks}


class Protocol:
    """A scoring rule over one split's rankings; subclasses say what ranking they read."""

    top_n: int = 0  # top gallery ids per query the rule reads
    needs_subsets: bool = False  # whether it reads the subset rankings

    def score(self, rankings: Rankings, split: EvalSplit) -> dict[str, float]:
        """The rule's metrics in percent."""
        raise NotImplementedError


@dataclass(frozen=True)
class TargetRecall(Protocol):
    """R@K: the target among the top K (exact ranks, the tie rule of trainer.eval.rank)."""

    ks: tuple[int, ...]

    def score(self, rankings: Rankings, split: EvalSplit) -> dict[str, float]:
        """R@K for every K."""
        return recall_from_ranks(rankings.target_ranks, self.ks)


@dataclass(frozen=True)
class CaptionRecall(Protocol):
    """Fashion200K (TIRG): R@K where any retrieved image with the target's caption counts."""

    ks: tuple[int, ...]
    captions: Mapping[str, str]  # image id -> caption

    @property
    def top_n(self) -> int:  # type: ignore[override]
        """The top max(K) ids are what the rule reads."""
        return max(self.ks)

    def score(self, rankings: Rankings, split: EvalSplit) -> dict[str, float]:
        """R@K by caption equality."""
        wanted = [self.captions.get(t) for t in split.queries.target_ids]
        return caption_recall(rankings.top_ids(), wanted, self.captions, self.ks)


@dataclass(frozen=True)
class SubsetRecall(Protocol):
    """CIRR's Recall_subset@K: the target's rank among the query's subset members."""

    ks: tuple[int, ...]
    needs_subsets = True

    def score(self, rankings: Rankings, split: EvalSplit) -> dict[str, float]:
        """Rsubset@K for every K."""
        targets = split.target_index.tolist()
        n = len(targets)
        return {f"Rsubset@{k}": 100.0 * sum(t in r[:k] for r, t in zip(
            rankings.subsets, targets, strict=True)) / n if n else 0.0 for k in self.ks}


@dataclass(frozen=True)
class CirrSubmission:
    """CIRR's test server files: `recall` (top 50) and `recall_subset` (top 3) by pairid."""

    split: str
    top_n = SUBMISSION_TOP["recall"]
    needs_subsets = True

    def files(self, rankings: Rankings, split: EvalSplit) -> dict[str, dict]:
        """File name -> body of both rc2 files."""
        bodies = cirr_submissions(split.queries.pair_ids, rankings.top_ids(),
                                  rankings.subset_ids())
        return {submission_name(self.split, metric): body for metric, body in bodies.items()}


HIT_RULES: dict[str, type[Protocol]] = {"target": TargetRecall, "caption": CaptionRecall}


def protocols_for(ks: Sequence[int], hit_rule: str = "target", subset_ks: Sequence[int] = (),
                  captions: Mapping[str, str] | None = None) -> list[Protocol]:
    """The protocols that score R@K under `hit_rule`, plus Rsubset@K when `subset_ks`."""
    if hit_rule not in HIT_RULES:
        raise ValueError(f"unknown hit rule {hit_rule!r}; use one of {tuple(HIT_RULES)}")
    ks = tuple(sorted(set(ks)))
    if hit_rule == "caption":
        if captions is None:
            raise ValueError("the caption hit rule needs the image captions (Fashion200K); "
                             "none were given")
        chosen: list[Protocol] = [CaptionRecall(ks, captions)]
    else:
        chosen = [HIT_RULES[hit_rule](ks)]
    if subset_ks:
        chosen.append(SubsetRecall(tuple(sorted(set(subset_ks)))))
    return chosen


def top_needed(protocols: Sequence[Protocol | CirrSubmission]) -> int:
    """How many top ids the protocols read (0: target ranks alone)."""
    return max((p.top_n for p in protocols), default=0)


def subsets_needed(protocols: Sequence[Protocol | CirrSubmission]) -> bool:
    """Whether any protocol reads the subset rankings."""
    return any(p.needs_subsets for p in protocols)


def score(rankings: Rankings, split: EvalSplit, protocols: Sequence[Protocol]
          ) -> dict[str, float]:
    """Every protocol's metrics, merged in order."""
    out: dict[str, float] = {}
    for protocol in protocols:
        out |= protocol.score(rankings, split)
    if "R@5" in out and "Rsubset@1" in out:
        out["Avg"] = cirr_average(out)
    return out


def cirr_average(metrics: Mapping[str, float]) -> float:
    """CIRR's headline number: (R@5 + Recall_subset@1) / 2."""
    return (metrics["R@5"] + metrics["Rsubset@1"]) / 2.0


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
