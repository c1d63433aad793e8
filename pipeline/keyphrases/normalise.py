"""Text normalisation before tagging: lower case, one spelling of contractions and quotes.

The tagger, the alignment of reference phrases and KeyBERT's document vector all read the
text after this step, so "doesn't" and "does not", "t shirt" and "t-shirt" look alike.
"""

from __future__ import annotations

import re

_MODAL = r"(?:should|must|could|would|will|might|may|can|needs? to|has to|have to|ought to)"
_MODAL_BE = re.compile(rf"\b{_MODAL} be\b")
_MODAL_HAVE = re.compile(rf"\b{_MODAL} have\b")
_SPACED_NOT = re.compile(
    r"\b(do|does|did|is|are|was|were|has|have|had|ca|wo|could|would|should)n t\b"
)


def normalise(text: str) -> str:
    """Lower-case and unify spellings ("t shirt", curly quotes, "'s", "doesn t")."""
    text = text.lower().replace("\u2019", "'").replace("`", "'")
    text = re.sub(r"\bt[\s-]?shirts?\b", "t-shirt", text)
    text = re.sub(r"\b(it|that|there|here|what|who|he|she)'s\b", r"\1 is", text)
    text = re.sub(r"'s\b", "", text)
    text = re.sub(r"'re\b", " are", text)
    text = re.sub(r"'m\b", " am", text)
    text = re.sub(r"'ve\b", " have", text)
    text = re.sub(r"'ll\b", " will", text)
    text = re.sub(r"'d\b", " would", text)
    text = re.sub(r"\bwould like\b", "want", text)
    text = re.sub(r"\b(\w+)n't\b", r"\1 not", text)
    # The apostrophe is often typed as a space: "doesn t have a collar".
    text = _SPACED_NOT.sub(r"\1 not", text)
    # "remove all animals but one": the count is the target, "but" no linker.
    text = re.sub(r"\ball (the )?(\w+) but one\b(?=\s*(?:$|[.,;:!?]|and\b))",
                  r"all \2 except one", text)
    # "the heel should be thinner", "needs to have a hood": the modal only makes a request.
    text = _MODAL_BE.sub("is", text)
    text = _MODAL_HAVE.sub("has", text)
    return text
