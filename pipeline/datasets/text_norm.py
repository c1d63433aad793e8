"""Modification-text normalisation of the official FashionIQ / Shoes loaders.

Each caption is lower-cased, every ASCII punctuation mark becomes a space, the words are split
on whitespace and each word found in the correction dictionary is replaced by its correction.
FashionIQ's two annotator captions are then joined with " and ".
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

# Punctuation to spaces (not deleted): "red/blue" must become two words, as in the official code.
_PUNCTUATION_TO_SPACE = str.maketrans({mark: " " for mark in string.punctuation})


def normalize_caption(text: str, corrections: Mapping[str, str]) -> str:
    """Lower-case, punctuation to spaces, typo-correct word by word, single spaces."""
    words = str(text).lower().translate(_PUNCTUATION_TO_SPACE).split()
    return " ".join(corrections.get(word, word) for word in words)


def join_captions(captions: Sequence[str], corrections: Mapping[str, str]) -> str:
    """FashionIQ's modification text: the normalised captions joined with " and "."""
    return " and ".join(normalize_caption(c, corrections) for c in captions)
