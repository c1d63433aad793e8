"""Protocol scoring against hand-computed answers: masking, subsets, caption hits, CIRR files."""

from types import SimpleNamespace

import pytest
import torch

from tests.trainer.eval.reference import recall_at_k
from trainer.eval import protocols
from trainer.eval.embed import SplitFeatures
from trainer.eval.rank import rank, subset_rankings

GALLERY = torch.eye(4)  # gallery image i scores query[i]
QUERIES = torch.tensor([[0.9, 0.5, 0.7, 0.1],   # reference 0, target 1, subset {0, 1, 2}
                        [0.2, 0.3, 0.1, 0.8]])  # reference 3, target 1, subset {1, 2, 3}
REFERENCE = torch.tensor([0, 3])
TARGET = torch.tensor([1, 1])
SUBSETS = [[0, 1, 2], [1, 2, 3]]


class _Queries(SimpleNamespace):
    def __len__(self) -> int:
        return len(self.pair_ids)


def _fake_split():
    queries = _Queries(split="val", pair_ids=["12", "13"], target_ids=["g1", "g1"],
                       reference_ids=["g0", "g3"])
    split = SimpleNamespace(queries=queries, gallery_ids=["g0", "g1", "g2", "g3"],
                            target_index=TARGET, reference_index=REFERENCE, name="val")
    return split


def test_reference_is_masked_before_ranking():
    scores = QUERIES @ GALLERY.T
    masked = recall_at_k(scores, TARGET, [1, 2], exclude_index=REFERENCE)
    unmasked = recall_at_k(scores, TARGET, [1, 2])
    # q0: 0.9 (reference) hidden, so 0.7 then the target; q1: reference 0.8 hidden, target first.
    assert masked == {"R@1": 50.0, "R@2": 100.0}
    assert unmasked == {"R@1": 0.0, "R@2": 50.0}
    rankings = rank(SplitFeatures(QUERIES, GALLERY), _fake_split())
    assert protocols.score(rankings, _fake_split(), protocols.protocols_for([1, 2])) == masked


def test_subset_recall_ranks_members_without_the_reference():
    rankings = rank(SplitFeatures(QUERIES, GALLERY), _fake_split(), subsets=SUBSETS)
    assert rankings.subsets == [[2, 1], [1, 2]]
    got = protocols.SubsetRecall((1, 2, 3)).score(rankings, _fake_split())
    assert got == {"Rsubset@1": 50.0, "Rsubset@2": 100.0, "Rsubset@3": 100.0}


def test_score_adds_the_cirr_average_of_r5_and_subset_r1():
    assert protocols.cirr_average({"R@5": 60.0, "Rsubset@1": 80.0}) == 70.0
    rankings = rank(SplitFeatures(QUERIES, GALLERY), _fake_split(), subsets=SUBSETS)
    chosen = protocols.protocols_for([1, 2, 5], subset_ks=[1, 2])
    assert protocols.subsets_needed(chosen) and protocols.top_needed(chosen) == 0
    # Avg = (R@5 + Rsubset@1) / 2 = (100 + 50) / 2.
    assert protocols.score(rankings, _fake_split(), chosen) == {
        "R@1": 50.0, "R@2": 100.0, "R@5": 100.0, "Rsubset@1": 50.0, "Rsubset@2": 100.0,
        "Avg": 75.0}


def test_caption_equality_hit_rule():
    captions = {"d": "black lace dress", "e": "white lace dress", "f": "white lace dress",
                "g": "white silk top"}
    top = [["f", "g", "d"], ["g", "e", "d"]]
    # q0's target is e: f has the same caption, so rank 1 is already a hit.
    got = protocols.caption_recall(top, ["white lace dress", "black lace dress"], captions,
                                   [1, 2, 3])
    assert got == {"R@1": 50.0, "R@2": 50.0, "R@3": 100.0}
    assert protocols.caption_recall([["d"]], [None], captions, [1]) == {"R@1": 0.0}


def test_caption_protocol_reads_the_top_ids_it_asks_for():
    # g2 shares g1's caption, so q0's first result (g2) is a hit.
    captions = {"g0": "a", "g1": "b", "g2": "b", "g3": "c"}
    chosen = protocols.protocols_for([1], "caption", captions=captions)
    assert protocols.top_needed(chosen) == 1
    rankings = rank(SplitFeatures(QUERIES, GALLERY), _fake_split(),
                    protocols.top_needed(chosen))
    assert protocols.score(rankings, _fake_split(), chosen) == {"R@1": 100.0}
    with pytest.raises(ValueError, match="needs the image captions"):
        protocols.protocols_for([1], "caption")
    with pytest.raises(ValueError, match="unknown hit rule 'nearest'"):
        protocols.protocols_for([1], "nearest")


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


def test_submission_protocol_writes_both_files_from_one_ranking():
    gallery = torch.nn.functional.normalize(torch.randn(60, 8), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    split = SimpleNamespace(
        queries=_Queries(split="test1", pair_ids=["3", "10"]), name="test1",
        gallery_ids=[f"test1-{i}" for i in range(60)],
        target_index=torch.tensor([-1, -1]), reference_index=torch.tensor([0, 1]))
    protocol = protocols.CirrSubmission("test1")
    rankings = rank(SplitFeatures(queries, gallery), split, protocol.top_n,
                    [list(range(2, 8)), list(range(1, 5))])
    files = protocol.files(rankings, split)
    recall = files["test1_pred_ranks_recall.json"]
    assert recall["3"] == rankings.top_ids()[0] and "test1-0" not in recall["3"]
    assert files["test1_pred_ranks_recall_subset.json"]["10"] == rankings.subset_ids()[1][:3]


def test_subset_ties_rank_the_target_after_the_tied_members():
    gallery = torch.eye(4)
    gallery[2] = gallery[1]  # members 1 and 2 are one image: an exact tie
    queries = torch.tensor([[0.1, 0.5, 0.0, 0.3]])
    no_reference = torch.tensor([-1])
    # Without a target, ties keep the subset's order; with one, the target follows its ties.
    assert subset_rankings(queries, gallery, [[1, 2, 3]], no_reference) == [[1, 2, 3]]
    for target, expected in ((1, [2, 1, 3]), (2, [1, 2, 3])):
        assert subset_rankings(queries, gallery, [[1, 2, 3]], no_reference,
                               torch.tensor([target])) == [expected]
