"""Protocol scoring against hand-computed answers: masking, subsets, caption hits, CIRR files."""

import pytest
import torch

from trainer import protocols
from trainer.metrics import recall_at_k

GALLERY = torch.eye(4)  # gallery image i scores query[i]
QUERIES = torch.tensor([[0.9, 0.5, 0.7, 0.1],   # reference 0, target 1, subset {0, 1, 2}
                        [0.2, 0.3, 0.1, 0.8]])  # reference 3, target 1, subset {1, 2, 3}
REFERENCE = torch.tensor([0, 3])
TARGET = torch.tensor([1, 1])


def test_reference_is_masked_before_ranking():
    scores = QUERIES @ GALLERY.T
    masked = recall_at_k(scores, TARGET, [1, 2], exclude_index=REFERENCE)
    unmasked = recall_at_k(scores, TARGET, [1, 2])
    # q0: 0.9 (reference) hidden, so 0.7 then the target; q1: reference 0.8 hidden, target first.
    assert masked == {"R@1": 50.0, "R@2": 100.0}
    assert unmasked == {"R@1": 0.0, "R@2": 50.0}


def test_subset_recall_ranks_members_without_the_reference():
    rankings = protocols.subset_rankings(QUERIES, GALLERY, [[0, 1, 2], [1, 2, 3]], REFERENCE)
    assert rankings == [[2, 1], [1, 2]]
    assert protocols.recall_subset(rankings, TARGET.tolist(), [1, 2, 3]) == {
        "Rsubset@1": 50.0, "Rsubset@2": 100.0, "Rsubset@3": 100.0}


def test_cirr_average_is_mean_of_r5_and_subset_r1():
    assert protocols.cirr_average({"R@5": 60.0, "Rsubset@1": 80.0}) == 70.0


def test_caption_equality_hit_rule():
    captions = {"d": "black lace dress", "e": "white lace dress", "f": "white lace dress",
                "g": "white silk top"}
    top = [["f", "g", "d"], ["g", "e", "d"]]
    # q0's target is e: f has the same caption, so rank 1 is already a hit.
    got = protocols.caption_recall(top, ["white lace dress", "black lace dress"], captions,
                                   [1, 2, 3])
    assert got == {"R@1": 50.0, "R@2": 50.0, "R@3": 100.0}
    assert protocols.caption_recall([["d"]], [None], captions, [1]) == {"R@1": 0.0}


def test_cirr_submission_files():
    names = [f"test1-{i}-0-img0" for i in range(60)]
    files = protocols.cirr_submissions(["3", "10"], [names[:50], names[5:55]],
                                       [names[:3], names[7:10]])
    recall, subset = files["recall"], files["recall_subset"]
    assert recall["version"] == subset["version"] == "rc2"
    assert (recall["metric"], subset["metric"]) == ("recall", "recall_subset")
    assert set(recall) == {"version", "metric", "3", "10"} == set(subset)
    assert recall["10"] == names[5:55] and subset["3"] == names[:3]
    assert protocols.submission_name("test1", "recall_subset") == (
        "test1_pred_ranks_recall_subset.json")
    with pytest.raises(ValueError, match="pairid 3: only 2"):
        protocols.cirr_submissions(["3"], [names[:50]], [names[:2]])


def _fake_split():
    from types import SimpleNamespace

    class Queries(SimpleNamespace):
        def __len__(self) -> int:
            return len(self.pair_ids)

    queries = Queries(split="val", pair_ids=["12", "13"], target_ids=["g1", "g1"],
                      reference_ids=["g0", "g3"])
    return SimpleNamespace(queries=queries, gallery_ids=["g0", "g1", "g2", "g3"],
                           target_index=TARGET, reference_index=REFERENCE)


def test_evaluate_glue_adds_subset_keys_and_caption_rule(monkeypatch, tmp_path):
    from pipeline.core.params import EvaluateParams
    from pipeline.stages import evaluate as stage

    monkeypatch.setattr(stage, "encode_split_weighted", lambda *a, **k: (QUERIES, None, GALLERY))
    extra = stage._ProtocolData(EvaluateParams(), None)
    extra.subsets = {("val", "12"): ["g0", "g1", "g2"], ("val", "13"): ["g1", "g2", "g3"]}
    cfg = EvaluateParams(ks=[1, 2], subset_ks=[1, 2])
    got = stage.score_split(None, _fake_split(), cfg, [1, 2, 5], extra, torch.device("cpu"))
    # Avg = (R@5 + Rsubset@1) / 2 = (100 + 50) / 2.
    assert got == {"R@1": 50.0, "R@2": 100.0, "R@5": 100.0, "Rsubset@1": 50.0,
                   "Rsubset@2": 100.0, "Avg": 75.0}
    # Caption rule: g2 shares g1's caption, so q0's first result (g2) is a hit.
    extra.captions = {"g0": "a", "g1": "b", "g2": "b", "g3": "c"}
    cfg = EvaluateParams(ks=[1], hit_rule="caption")
    got = stage.score_split(None, _fake_split(), cfg, [1], extra, torch.device("cpu"))
    assert got == {"R@1": 100.0}


def test_subset_ties_rank_the_target_after_the_tied_members():
    gallery = torch.eye(4)
    gallery[2] = gallery[1]  # members 1 and 2 are one image: an exact tie
    queries = torch.tensor([[0.1, 0.5, 0.0, 0.3]])
    no_reference = torch.tensor([-1])
    # Without a target, ties keep the subset's order; with one, the target follows its ties.
    assert protocols.subset_rankings(queries, gallery, [[1, 2, 3]], no_reference) == [[1, 2, 3]]
    for target, expected in ((1, [2, 1, 3]), (2, [1, 2, 3])):
        rankings = protocols.subset_rankings(queries, gallery, [[1, 2, 3]], no_reference,
                                             torch.tensor([target]))
        assert rankings == [expected]
        assert protocols.recall_subset(rankings, [target], [1, 2]) == {
            "Rsubset@1": 0.0, "Rsubset@2": 100.0}
