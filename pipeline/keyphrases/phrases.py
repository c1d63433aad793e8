"""What a tagger cannot learn from spans alone: negation wording, "same" requests, typos.

The tagger marks spans of the text; these few rules turn each span into the phrase a keyword
list says: "without a collar" -> "no collar", "is identical" / "exactly the same" -> "same",
one-edit typos corrected, and a phrase that repeats an earlier one (same content words) dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.keyphrases.align import STOP, word_key

SAME = "same"
# A span made of these words only asks for no change.
_SAME_WORDS = frozenset({"same", "identical", "exactly", "exact", "alike", "unchanged"})
# Negations said as a preposition become the keyword form "no X".
_NEGATION_LEADS = {"without": "no"}
# "not have a collar", "not want stripes": a negated verb of having or wanting is "no X" too.
_NEGATED = frozenset({"not", "never"})
_HAVING = frozenset({"have", "has", "had", "want", "wants", "need", "needs", "include",
                     "includes", "contain", "contains", "feature", "features"})
_LEADING_ARTICLES = frozenset({"a", "an", "the", "any"})

Corrector = Callable[[str], str]


def phrase_of(words: list[str], correct: Corrector | None = None) -> str:
    """The keyword phrase for one tagged span of words."""
    if correct is not None:
        words = [correct(w) for w in words]
    # A span's edge words the scorer ignores ("red and", "dog is") only clutter the image.
    while words and words[-1] in STOP:
        words = words[:-1]
    if len(words) > 2 and words[0] in _NEGATED and words[1] in _HAVING:
        words = ["without", *words[2:]]
    while len(words) > 1 and words[0] in STOP:
        words = words[1:]
    if words and words[0] in _NEGATION_LEADS:
        rest = [w for w in words[1:] if w not in _LEADING_ARTICLES] or words[1:]
        words = [_NEGATION_LEADS[words[0]], *rest]
    content = [w for w in words if w not in STOP]
    if content and all(w in _SAME_WORDS for w in content):
        return SAME
    return " ".join(words)


def drop_repeats(phrases: list[str]) -> list[str]:
    """Phrases in order, each content-word set once ("gray" after "grey" is a repeat)."""
    seen: set[frozenset[str]] = set()
    out: list[str] = []
    for phrase in phrases:
        key = frozenset(word_key(w) for w in phrase.split() if w not in STOP) or frozenset(
            phrase.split())
        if key not in seen:
            seen.add(key)
            out.append(phrase)
    return out
