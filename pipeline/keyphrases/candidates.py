"""Candidate keyword phrases from one modification text, by shallow rules over word lists.

The text is cut into clauses (punctuation), what the target must no longer show is dropped
("instead of X", "remove X", "there was X - now"), clauses are cut into attribute chunks at
linkers ("and", "with", "but") and copulas, and each chunk is trimmed of request verbs,
articles and fillers. Phrases come back in text order, repeats merged.

Each step lives in its own module: clauses (text -> target clauses), chunks (clause -> attribute
chunks), attributes (chunk -> phrases), repeats (one phrase per attribute).
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.keyphrases.attributes import (
    render,
    split_attributes,
    split_colour_list,
    split_negated_list,
    strip_edges,
)
from pipeline.keyphrases.chunks import (
    is_garment_only,
    is_same_request,
    split_on_linkers,
    sub_chunks,
)
from pipeline.keyphrases.clauses import (
    cut_instead,
    cut_rewrites,
    cut_than,
    is_empty_answer,
    is_removal,
    removed_thing,
    target_clauses,
)
from pipeline.keyphrases.repeats import drop_negated_repeats, merge_repeats, pluralise_sleeves

SAME = "same"

Corrector = Callable[[str], str]


def generate_candidates(text: str, correct: Corrector | None = None) -> list[str]:
    """Candidate keyword phrases of one modification text, in text order, repeats merged."""
    chunks: list[list[str]] = []
    removals: list[str] = []
    saw_same = False
    for raw in target_clauses(text):
        tokens = [correct(t) for t in raw] if correct else raw
        tokens = cut_rewrites(cut_instead(tokens))
        for piece in split_on_linkers(tokens):
            if is_removal(piece):
                removals.append(" ".join(removed_thing(piece)))
                continue
            if is_empty_answer(piece):
                continue
            piece = cut_than(piece)
            for sub in sub_chunks(piece):
                if is_same_request(sub):
                    saw_same = True
                    continue
                for attr in split_attributes(render(strip_edges(sub))):
                    if attr and not is_garment_only(attr):
                        for item in split_negated_list(attr):
                            chunks.extend(split_colour_list(item))
    phrases = pluralise_sleeves(drop_negated_repeats(merge_repeats(
        [" ".join(c) for c in chunks])))
    # "is similar but blue and more fitted" asks for changes, not for the same item: "same" is
    # kept next to one other request at most.
    if saw_same and SAME not in phrases and len(phrases) <= 1:
        return [SAME, *phrases]
    # Next to other requests a removal goes unsaid, as keyword lists leave it; alone it is
    # the whole request, and an empty list would draw nothing on the image.
    return phrases or [r for r in removals if r]
