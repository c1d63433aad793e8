"""Which epoch is best: the val metrics that select it, their sum, and the official stop rule.

The official code picks the epoch by a sum of recalls (FashionIQ / Shoes R@10 + R@50, Fashion200K
R@1 + R@10 + R@50 with caption-equality hits, CIRR all four R@K and the three Rsubset@K);
`train.val_metric` names them and `train.val_hit_rule` picks the hit rule. Validation scores
through trainer.eval's protocols, the very ones the evaluate stage uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainer.data.meta import InputsFormatError
from trainer.eval.embed import SplitFeatures
from trainer.eval.protocols import Protocol, protocols_for, score, subsets_needed, top_needed
from trainer.eval.rank import rank
from trainer.eval.split import EvalSplit, subset_positions

# pair id -> gallery image ids of the query's CIRR subset (img_set.members)
Subsets = Mapping[str, Sequence[str]]
Captions = Mapping[str, str]  # image id -> caption (Fashion200K caption-equality hits)


@dataclass(frozen=True)
class ValScoring:
    """How validation scores: the protocols, and the subset members they may read."""

    protocols: tuple[Protocol, ...]
    subsets: Subsets | None = None


def val_scoring(names: Sequence[str], logged_ks: Sequence[int], hit_rule: str,
                subsets: Subsets | None, captions: Captions | None) -> ValScoring:
    """The scoring of `names` (plus R@K for `logged_ks`); ValueError when data is missing."""
    ks, subset_ks = metric_cutoffs(names)
    if subset_ks and subsets is None:
        raise ValueError("train.val_metric names Rsubset@K, which needs each val query's "
                         "subset members (CIRR); none were given")
    if hit_rule == "caption" and captions is None:
        raise ValueError("train.val_hit_rule caption needs the image captions (Fashion200K); "
                         "none were given")
    protocols = protocols_for(sorted({*logged_ks, *ks}), hit_rule, subset_ks,
                              captions if hit_rule == "caption" else None)
    return ValScoring(protocols=tuple(protocols), subsets=subsets if subset_ks else None)


def val_metrics(features: SplitFeatures, split: EvalSplit, scoring: ValScoring
                ) -> dict[str, float]:
    """The val split's metrics: the evaluate stage's rank and score on these features."""
    if not split.gallery_ids:
        raise InputsFormatError("the val split has an empty gallery")
    protocols = scoring.protocols
    subsets = (subset_positions(split, scoring.subsets) if subsets_needed(protocols)
               else None)
    return score(rank(features, split, top_needed(protocols), subsets), split, protocols)


def metric_cutoffs(names: Sequence[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The K of every R@K and of every Rsubset@K in `names`, each sorted."""
    ks, subset_ks = set(), set()
    for name in names:
        match = re.fullmatch(r"(R|Rsubset)@([1-9][0-9]*)", name)
        if match is None:
            raise ValueError(f"val metric {name!r} must look like 'R@10' or 'Rsubset@1'")
        (ks if match[1] == "R" else subset_ks).add(int(match[2]))
    return tuple(sorted(ks)), tuple(sorted(subset_ks))


def selection_score(metrics: Mapping[str, float], names: Sequence[str]) -> float:
    """The sum of the named metrics: what the best epoch maximises."""
    return float(sum(metrics[name] for name in names))


def is_improvement(value: float, best: float | None, higher_is_better: bool,
                   tolerance: float) -> bool:
    """Whether `value` beats the best so far by more than `tolerance`."""
    if best is None:
        return True
    return value > best + tolerance if higher_is_better else value < best - tolerance


def should_stop(epochs_without_improvement: int, patience: int) -> bool:
    """Official tolerance counter: stop if the next epoch is the patience-th since the best."""
    # The official loop would train that epoch without validating it, so it changes nothing.
    return 0 < patience <= epochs_without_improvement + 1
