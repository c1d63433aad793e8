"""The tagger's parts without the trained weights: alignment, decoding, phrase wording, paths."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.keyphrases import naive_split
from pipeline.keyphrases.align import B, I, O, align
from pipeline.keyphrases.clauses import (
    best_span_margin,
    clauses_of,
    removal_scope,
    rescue_bare_clauses,
    within_clauses,
)
from pipeline.keyphrases.encode import split_words
from pipeline.keyphrases.normalise import normalise
from pipeline.keyphrases.phrases import drop_repeats, phrase_of
from pipeline.keyphrases.tagger import decode_spans, load_tagger, viterbi


def _labels(text: str, phrases: list[str]) -> tuple[list[int], int]:
    return align(split_words(normalise(text))[0], phrases)


def test_reference_phrases_align_to_their_spans() -> None:
    # words compared singular, in US spelling, "without" as "no"; articles left out at the edges
    assert _labels("is grey without a collar", ["gray", "no collar"]) == ([O, B, B, I, I], 2)
    assert _labels("Pomeranian is tilting its head to the right.",
                   ["Pomeranian", "tilting head to the right"]) == (
        [B, O, B, I, I, I, I, I], 2)
    # a phrase the text does not say finds no span (the text is left out of training)
    assert _labels("is white and is white", ["same"]) == ([O, O, O, O, O], 0)
    # two mentions: each phrase takes its own span, left to right
    assert _labels("is black and is black", ["black", "black"])[1] == 2


def test_viterbi_never_starts_a_span_with_inside() -> None:
    log = np.log(np.array([[0.1, 0.2, 0.7], [0.1, 0.1, 0.8], [0.9, 0.05, 0.05]]))
    tags = viterbi(log)
    assert tags[0] != I and tags == [B, I, O]
    assert decode_spans([B, I, O, B, B, I]) == [(0, 2), (3, 4), (4, 6)]
    assert viterbi(np.zeros((0, 3))) == []


def test_phrase_wording_rules() -> None:
    assert phrase_of(["without", "a", "collar"]) == "no collar"
    # a negated verb of having or wanting is a "no X" as well
    assert phrase_of(["not", "have", "a", "collar"]) == "no collar"
    assert phrase_of(["not", "want", "any", "stripes"]) == "no stripes"
    assert phrase_of(["not", "shiny"]) == "not shiny"
    # edge words the scorer ignores are trimmed; a span of only such words is no phrase
    assert phrase_of(["red", "and"]) == "red"
    assert phrase_of(["in", "the", "top", "left"]) == "top left"
    assert phrase_of(["is"]) == ""
    assert phrase_of(["exactly", "the", "same"]) == "same"
    assert phrase_of(["is", "identical"]) == "same"
    assert phrase_of(["black", "strpes"], lambda w: "stripes" if w == "strpes" else w) == (
        "black stripes")
    assert drop_repeats(["grey", "long sleeves", "gray", "long sleeve"]) == [
        "grey", "long sleeves"]


def test_naive_split_is_the_issue_baseline() -> None:
    assert naive_split("Is black, with a collar and longer") == ["is black", "a collar", "longer"]
    assert naive_split("  and ") == []


def test_tagger_round_trips_through_npz(tmp_path) -> None:
    from devkit.tiny import build_tiny_tagger

    path = build_tiny_tagger(tmp_path / "t.npz", width=4, seed=0)
    tagger = load_tagger(path)
    assert tagger.width == 6 and tagger.vocabulary == {"sleeves", "collar"}
    rng = np.random.default_rng(0)
    texts = [rng.normal(size=(n, 6)).astype(np.float32) for n in (6, 3, 6, 0)]
    alone = [tagger.scores(f) for f in texts]
    together = tagger.scores_batch(texts)
    # a text's scores do not depend on which texts share its batch
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    assert together[3].shape == (0, 3) and tagger.spans(texts[3]) == []
    assert tagger.spans(texts[0])  # never no span for a text with words
    np.savez(tmp_path / "old.npz", w1=np.zeros((4, 3)), vocab=np.array([], dtype=str))
    with pytest.raises(ValueError, match="no tagger network"):
        load_tagger(tmp_path / "old.npz")
    with pytest.raises(FileNotFoundError, match="train_tagger"):
        load_tagger(tmp_path / "missing.npz")


def _words(text: str) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...], list[list[int]]]:
    words, spans = split_words(normalise(text))
    return words, spans, clauses_of(normalise(text), words, spans)


def test_clauses_are_the_naive_split_pieces() -> None:
    text = "a cross instead of a square, is bigger and with stripes"
    words, _, clauses = _words(text)
    assert [" ".join(words[k] for k in c) for c in clauses] == naive_split(text)
    assert _words("")[2] == []


def _scores(tags: list[list[float]]) -> np.ndarray:
    return np.log(np.array(tags))


def test_a_bare_clause_is_rescued_whole_within_the_margin() -> None:
    words, _, clauses = _words("a cross, is bigger")  # clauses [0, 1], [2, 3]
    # "cross" tagged B; "bigger" leans O, by log(0.6 / 0.3) = 0.69 nats
    scores = _scores([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1]])
    assert best_span_margin(scores, clauses[1]) == pytest.approx(np.log(0.3 / 0.6))
    found = [(1, 2)]
    assert rescue_bare_clauses(found, scores, words, clauses, margin=1.0) == [(1, 2), (2, 4)]
    assert rescue_bare_clauses(found, scores, words, clauses, margin=0.5) == found
    assert rescue_bare_clauses(found, scores, words, clauses, margin=0.0) == found
    # a covered clause, or one of only stop words ("is"), is never rescued
    assert rescue_bare_clauses([(1, 2), (3, 4)], scores, words, clauses, 9.0) == [(1, 2), (3, 4)]
    stop_words, _, stop_clauses = _words("a cross, is")
    assert rescue_bare_clauses(found, scores[:3], stop_words, stop_clauses, 9.0) == found


def test_a_span_never_runs_across_a_clause_boundary() -> None:
    words, _, clauses = _words("red and white logo, big print")  # "and" is in no clause
    # the tagger alone reads "red and white logo big print" as one phrase
    joined = _scores([[0.1, 0.8, 0.1]] + [[0.1, 0.1, 0.8]] * 5)
    assert decode_spans(viterbi(joined)) == [(0, 6)]
    bounded = within_clauses(joined, clauses)
    assert decode_spans(viterbi(bounded)) == [(0, 1), (2, 4), (4, 6)]
    # inside a clause the tagger still decides: one phrase, several, or none
    assert np.array_equal(bounded[[3, 5]], joined[[3, 5]])
    assert np.array_equal(bounded[[0, 2, 4], :2], joined[[0, 2, 4], :2])
    assert np.isneginf(bounded[1, 1:]).all() and np.isneginf(bounded[[0, 2, 4], 2]).all()
    # in a text of one clause, every word after the first keeps its scores
    _, _, one_clause = _words("white logo")
    assert np.array_equal(within_clauses(joined[:2], one_clause)[1], joined[1])


def test_a_removal_keeps_its_verb_and_its_object() -> None:
    words, _, clauses = _words("make it black and remove the stripes")
    # the tagger marked only the object, or only the verb
    assert removal_scope([(2, 3), (6, 7)], words, clauses) == [(2, 3), (4, 7)]
    assert removal_scope([(2, 3), (4, 5)], words, clauses) == [(2, 3), (4, 7)]
    # the verb's object stops at the next span
    words, _, clauses = _words("remove the big stripes")
    assert removal_scope([(0, 1), (2, 3)], words, clauses) == [(0, 2), (2, 3)]
    # the verb of another clause is not pulled in
    words, _, clauses = _words("remove it, stripes")
    assert removal_scope([(2, 3)], words, clauses) == [(2, 3)]
