"""The naive candidate baseline: split the text at commas and at "and" / "with".

No model, no word lists: the floor any learned candidate generator must beat on every domain
(bench/keywords.py prints it next to ours), and a cheap stand-in where no model is loaded.
"""

from __future__ import annotations

import re

from pipeline.keyphrases.normalise import normalise

# The words the text is cut at, besides commas (pipeline.keyphrases.clauses cuts the same way).
JOINERS = frozenset({"and", "with"})
_SPLIT = re.compile(",|" + "|".join(rf"\b{w}\b" for w in sorted(JOINERS)))


def naive_split(text: str) -> list[str]:
    """Pieces of the lower-cased text between commas, "and" and "with"."""
    pieces = (" ".join(p.split()) for p in _SPLIT.split(normalise(text)))
    return [p for p in pieces if p]


def generate_candidates(text: str) -> list[str]:
    """Model-free candidate phrases of one text (the naive split)."""
    return naive_split(text)
