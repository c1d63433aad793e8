"""Demo texts with the attributes they change, and whether keywords name every change.

The demo generator (`pipeline.datasets.demo`) knows which attributes a text changes and to
what; a keyword list names a change when one phrase holds the new value's words: the colour,
shape or position ("bottom left": both words in one phrase), a size word or comparative for
size, the pattern or its noun ("stripes") for a pattern, "plain", a negation ("no dots") or a
removal with its object ("remove the dots") for a pattern removed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from pipeline.datasets import demo

_PATTERN_NOUN = {"striped": "stripes", "dotted": "dots", "checkered": "checks"}
_COMPARATIVES = frozenset({"bigger", "larger", "smaller"})
_REMOVALS = frozenset({"remove", "removed"})
_PATTERN_WORDS = frozenset({"pattern", *_PATTERN_NOUN, *_PATTERN_NOUN.values()})


@dataclass(frozen=True)
class DemoCase:
    """One demo modification text and the new values of the attributes it changes."""

    text: str
    changes: tuple[tuple[str, str], ...]  # (attribute, new value)


def demo_cases(n: int, seed: int = 0) -> list[DemoCase]:
    """`n` texts drawn as the demo dataset draws them (a random reference, 1-2 changes)."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        ref = rng.choice(demo.ALL_THINGS)
        new, changed = demo._changed_thing(ref, rng)
        text = demo.modification_text(ref, new, changed, rng)
        cases.append(DemoCase(text, tuple((a, getattr(new, a)) for a in changed)))
    return cases


def _words(phrase: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", phrase.lower()))


def names_change(attribute: str, value: str, keywords: list[str]) -> bool:
    """True when one keyword phrase names `attribute`'s new `value`."""
    for phrase in keywords:
        words = _words(phrase)
        if attribute == "size" and (value in words or words & _COMPARATIVES):
            return True
        if attribute == "pattern":
            if value == "plain" and ("plain" in words or words & {"no", "without"}
                                     or (words & _REMOVALS and words & _PATTERN_WORDS)):
                return True
            if value != "plain" and words & {value, _PATTERN_NOUN.get(value, value)}:
                return True
        if attribute in ("colour", "shape", "position") and _words(value) <= words:
            return True
    return False


def names_every_change(case: DemoCase, keywords: list[str]) -> bool:
    """True when `keywords` name every changed attribute of `case`."""
    return all(names_change(a, v, keywords) for a, v in case.changes)
