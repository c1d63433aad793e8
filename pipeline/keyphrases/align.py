"""Training labels for the tagger: each reference keyword aligned to its span of the text.

A reference phrase matches the span of text words whose content words overlap it best
(Jaccard, the scorer's own phrase match), words compared singular, in US spelling and with
"without"/"not" read as "no". Matched spans are labelled B (first word) and I (the rest).
"""

from __future__ import annotations

from pipeline.keyphrases.encode import split_words
from pipeline.keyphrases.normalise import normalise
from pipeline.keyphrases.spelling import US_SPELLING

O, B, I = 0, 1, 2  # noqa: E741 - the usual names of BIO tags
# Words the scorer ignores when it compares phrases.
STOP = frozenset({"a", "an", "the", "and", "is", "are", "with", "of", "it", "its", "has",
                  "have", "in", "to", "be", "that", "this"})
_NEGATION = {"without": "no", "not": "no", "non": "no", "never": "no"}
# The scorer accepts a match at Jaccard >= 0.5; alignments below it teach nothing true.
MIN_JACCARD = 0.5
# A span may be this many words longer than its phrase (articles, "its", fillers inside).
SLACK = 3


def singular(word: str) -> str:
    """'sleeves' -> 'sleeve'; leaves 'dress', 'less', 'bus' and short words alone."""
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def word_key(word: str) -> str:
    """The form two wordings of one word share: singular, US spelling, negations as 'no'."""
    word = _NEGATION.get(word, word)
    return singular(US_SPELLING.get(word, word))


def _content(words: list[str] | tuple[str, ...]) -> frozenset[str]:
    return frozenset(word_key(w) for w in words if w not in STOP)


def align(words: tuple[str, ...], phrases: list[str]) -> tuple[list[int], int]:
    """BIO labels for `words` and how many of `phrases` found a span (non-overlapping)."""
    labels = [O] * len(words)
    taken = [False] * len(words)
    found = 0
    for phrase in phrases:
        target = _content(split_words(normalise(phrase))[0])
        if not target:
            continue
        span = _best_span(words, taken, target, len(split_words(normalise(phrase))[0]))
        if span is None:
            continue
        a, b = span
        labels[a] = B
        for k in range(a + 1, b):
            labels[k] = I
        for k in range(a, b):
            taken[k] = True
        found += 1
    return labels, found


def _best_span(
    words: tuple[str, ...], taken: list[bool], target: frozenset[str], size: int
) -> tuple[int, int] | None:
    """The free span with the best Jaccard to `target`; ties go to the shorter, then earlier."""
    best: tuple[float, int, int] | None = None
    for a in range(len(words)):
        if taken[a] or words[a] in STOP:
            continue
        for b in range(a + 1, min(len(words), a + size + SLACK) + 1):
            if taken[b - 1]:
                break
            if words[b - 1] in STOP:
                continue
            have = _content(words[a:b])
            score = len(have & target) / len(have | target)
            better = best is None or (score, a - b) > (best[0], best[1] - best[2])
            if score >= MIN_JACCARD and better:
                best = (score, a, b)
    return None if best is None else (best[1], best[2])
