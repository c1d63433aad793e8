"""Clause-level checks on the tagger's spans: no phrase across clauses, no request left
without a candidate, and a removal keeps its object.

A modification text lists its requests in clauses ("a cross instead of a square, is bigger");
a clause is the naive split's piece (between commas, "and", "with"). The tagger decides, in
each clause, which words make a phrase and whether the clause holds one phrase, several or
none; a phrase never runs across a clause boundary. Whether "red and white logo" stays one
phrase is a convention of one reference list, not of the language (FashionIQ's keeps such
phrases; a tagger trained on CIRR joins "darker and more scary"): a tagger trained on one
dev set and scored on the other gained 0.023 and 0.037 of F1 once its spans kept to the
clauses, while each in-domain figure fell by 0.003 at most (docs/keywords.md).

The tagger learned from reference lists that often leave a clause out (FashionIQ's two
captions repeat each other, and the LLM kept one), so it sometimes leaves a real request
bare. A clause the tagger left without any span, where its best single span scores within
`margin` nats of tagging the clause all O, becomes a candidate as a whole, and KeyBERT then
ranks it like any other.
"""

from __future__ import annotations

import numpy as np

from pipeline.keyphrases.align import STOP
from pipeline.keyphrases.candidates import JOINERS

Span = tuple[int, int]  # words [a, b)
# Words whose object is what the target lacks: "remove the stripes" is one request, and
# "stripes" alone would ask for the opposite.
_REMOVALS = frozenset({"remove", "removed", "delete", "erase", "without"})


def clauses_of(text: str, words: tuple[str, ...], spans: tuple[Span, ...]) -> list[list[int]]:
    """Word indices of each clause of `text` (cut at commas and at "and" / "with",
    which belong to no clause); `spans` are the words' character offsets."""
    out: list[list[int]] = []
    current: list[int] = []
    for k, word in enumerate(words):
        comma_before = k > 0 and "," in text[spans[k - 1][1] : spans[k][0]]
        if (word in JOINERS or comma_before) and current:
            out.append(current)
            current = []
        if word not in JOINERS:
            current.append(k)
    if current:
        out.append(current)
    return out


def within_clauses(scores: np.ndarray, clauses: list[list[int]]) -> np.ndarray:
    """O/B/I scores where only spans inside one clause can be decoded: a word of no clause
    (a joiner) is O, and a clause's first word never continues a span (I)."""
    bounded = np.array(scores, dtype=np.float64, copy=True)
    inside = np.zeros(len(bounded), dtype=bool)
    for clause in clauses:
        inside[clause] = True
        bounded[clause[0], 2] = -np.inf
    bounded[~inside, 1:] = -np.inf
    return bounded


def best_span_margin(scores: np.ndarray, clause: list[int]) -> float:
    """Log-score of the clause's best single B I* span (O elsewhere) minus all O."""
    best = -np.inf
    for i, start in enumerate(clause):
        total = scores[start, 1] - scores[start, 0]
        best = max(best, total)
        for k in clause[i + 1 :]:
            total += scores[k, 2] - scores[k, 0]
            best = max(best, total)
    return float(best)


def rescue_bare_clauses(found: list[Span], scores: np.ndarray, words: tuple[str, ...],
                        clauses: list[list[int]], margin: float) -> list[Span]:
    """`found` plus, for each clause with content words and no span, the whole clause when
    the tagger nearly marked a phrase in it (best span within `margin`); text order.
    `margin` 0 adds nothing."""
    if margin <= 0:
        return found
    covered = {k for a, b in found for k in range(a, b)}
    extra = [(clause[0], clause[-1] + 1) for clause in clauses
             if not covered.intersection(clause)
             and any(words[k] not in STOP for k in clause)
             and best_span_margin(scores, clause) > -margin]
    return sorted(found + extra)


def removal_scope(found: list[Span], words: tuple[str, ...],
                  clauses: list[list[int]]) -> list[Span]:
    """Spans widened so that a removal verb and its object stay together: a span right after
    "remove (the)" takes the verb, and a span ending in the verb takes the rest of its clause
    (up to the next span)."""
    clause_of = {k: n for n, clause in enumerate(clauses) for k in clause}
    out: list[Span] = []
    for n, (a, b) in enumerate(found):
        k = a - 1
        while k >= 0 and words[k] in STOP and clause_of.get(k) == clause_of.get(a):
            k -= 1
        if (k >= 0 and words[k] in _REMOVALS and clause_of.get(k) == clause_of.get(a)
                and (not out or out[-1][1] <= k)):
            a = k
        if words[b - 1] in _REMOVALS:
            next_start = found[n + 1][0] if n + 1 < len(found) else len(words)
            end = clauses[clause_of[b - 1]][-1] + 1 if b - 1 in clause_of else b
            b = max(b, min(end, next_start))
        out.append((a, b))
    return out
