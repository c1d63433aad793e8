"""Stage evaluate's per-query rows: exact target ranks and top-10 ids under the tie rule."""

from types import SimpleNamespace

import pyarrow as pa
import torch

from pipeline.core.params import EvaluateParams
from pipeline.stages import evaluate as stage
from trainer.eval.embed import SplitFeatures

# Gallery images 1 and 2 are the same image (an exact tie for every query).
GALLERY = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
QUERIES = torch.tensor([[0.2, 0.6, 0.1], [0.9, 0.1, 0.3]])


class _Queries(SimpleNamespace):
    def __len__(self) -> int:
        return len(self.pair_ids)


def _split(target: list[int], reference: list[int]) -> SimpleNamespace:
    queries = _Queries(split="val", pair_ids=["p0", "p1"], target_ids=["", ""],
                       reference_ids=["", ""])
    return SimpleNamespace(queries=queries, gallery_ids=["a", "b", "c", "d"], name="val",
                           target_index=torch.tensor(target),
                           reference_index=torch.tensor(reference))


def _score(split: SimpleNamespace, mode: str) -> tuple[dict, list[dict]]:
    """The stage's scoring of one mode on fixed features: metrics and per-query rows."""
    scoring = stage.Scoring(EvaluateParams(ks=[1]), None, split, [1])
    rankings = scoring.rank(SplitFeatures(QUERIES, GALLERY), stage.PER_QUERY_TOP)
    return scoring.score(rankings), stage.per_query_rows(split, mode, rankings, None)


def test_per_query_rows_rank_ties_above_the_target() -> None:
    # q0 targets "c", tied with "b": rank 1 and "b" listed first. q1's reference "a" is masked.
    got, rows = _score(_split([2, 3], [-1, 0]), "dqu")
    assert got == {"R@1": 50.0}
    assert rows == [
        {"split": "val", "pair_id": "p0", "mode": "dqu", "target_rank": 1,
         "top10": ["b", "c", "a", "d"], "lambda": None},
        {"split": "val", "pair_id": "p1", "mode": "dqu", "target_rank": 0,
         "top10": ["d", "b", "c", "a"], "lambda": None},
    ]
    # The rows fit the parquet schema the stage writes.
    assert pa.Table.from_pylist(rows, schema=stage.PER_QUERY).num_rows == 2


def test_the_target_follows_its_tie_whichever_copy_it_is() -> None:
    _, rows = _score(_split([1, -1], [-1, -1]), "text")
    assert [r["top10"] for r in rows] == [["c", "b", "a", "d"], ["a", "d", "b", "c"]]
    assert [r["target_rank"] for r in rows] == [1, 4]  # a missing target gets rank G
