"""Clauses of a modification text that describe the target, cut free of the reference.

The text is normalised and cut at punctuation; what the target must no longer show is dropped
("instead of X", "remove X", "there was X - now Y", "goes from X to Y").
"""

from __future__ import annotations

import re

from pipeline.keyphrases import lexicon as lx
from pipeline.keyphrases.repeats import singular

# Clause breaks: sentence punctuation and a spaced dash ("there was X - now Y").
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\"]+|\s+-+\s+|\s+--+|--+\s+")
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_MODAL = r"(?:should|must|could|would|will|might|may|can|needs? to|has to|have to|ought to)"
_MODAL_BE = re.compile(rf"\b{_MODAL} be\b")
_MODAL_HAVE = re.compile(rf"\b{_MODAL} have\b")
_SPACED_NOT = re.compile(
    r"\b(do|does|did|is|are|was|were|has|have|had|ca|wo|could|would|should)n t\b"
)


def normalise(text: str) -> str:
    """Lower-case and unify spellings the rules rely on ("t shirt", curly quotes, "'s")."""
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
    # "remove all animals but one": "but" here is not a linker.
    text = re.sub(r"\ball (the )?(\w+) but one\b(?=\s*(?:$|[.,;:!?]|and\b))",
                  r"all \2 except one", text)
    # "the heel should be thinner", "needs to have a hood": the modal only makes a request.
    text = _MODAL_BE.sub("is", text)
    text = _MODAL_HAVE.sub("has", text)
    return text


def clauses(text: str) -> list[list[str]]:
    """Split a normalised text into clauses of word tokens."""
    out = []
    for part in _CLAUSE_BREAK.split(text):
        tokens = _TOKEN.findall(part)
        if tokens:
            out.append(tokens)
    return out


# "goes from three puppies to a single puppy": only what follows "to" is the target.
_GOES_FROM = re.compile(r"\b(?:goes|go|going|went|moves?|moving) from\b[^.;!?]*?(?<!next)(?<!close)"
                        r"(?<!up) to\b")


def _starts_now(tokens: list[str]) -> bool:
    """True for a clause that turns to the target: 'now ...', 'and now ...'."""
    return tokens[:1] == ["now"] or tokens[:2] in (["and", "now"], ["but", "now"])


def _drop_old_state(parts: list[list[str]]) -> list[list[str]]:
    """Drop what describes the reference rather than the target: clauses before a 'now'
    clause ("there was X - now Y"), and 'instead of' / 'unlike' clauses."""
    kept: list[list[str]] = []
    for i, tokens in enumerate(parts):
        later = parts[i + 1 :]
        if tokens[:2] in (["there", "was"], ["there", "were"]) and later:
            continue
        if tokens[:1] == ["was"] and later:
            continue
        if tokens[:2] in (["instead", "of"], ["rather", "than"], ["unlike", "the"]) and (
                kept or later):
            continue
        if tokens[:1] == ["unlike"] and later:  # "unlike two dogs, I want a llama"
            continue
        if any(_starts_now(t) for t in later):  # "X sat on grass - now it runs"
            continue
        if tokens[:3] in (["in", "place", "of"], ["as", "opposed", "to"]):
            continue
        kept.append(tokens)
    return kept or parts


def cut_instead(tokens: list[str]) -> list[str]:
    """Keep the part of a clause before 'instead of' / 'rather than' (the new state); a clause
    that opens with it names the old thing first: 'instead of rabbits dog is sitting' -> 'dog
    is sitting' (the old thing taken as one word: there is no comma to end it)."""
    for i in range(len(tokens) - 1):
        pair = (tokens[i], tokens[i + 1])
        if pair in (("instead", "of"), ("rather", "than"), ("not", "like")):
            if i == 0:
                rest = tokens[2:]
                while rest and rest[0] in lx.ARTICLES | lx.POSSESSIVES:
                    rest = rest[1:]
                return rest[1:]
            return tokens[:i]
    return tokens


def cut_than(tokens: list[str]) -> list[str]:
    """'more grey than blue' -> 'more grey': what follows 'than' is what the reference shows;
    'more than one dog' is a count and stays."""
    for i in range(1, len(tokens)):
        if tokens[i] == "than" and tokens[i - 1] not in lx.DEGREE | {"other", "rather"}:
            return tokens[:i]
    return tokens


def cut_rewrites(tokens: list[str]) -> list[str]:
    """Turn 'replace X with Y', 'swap X for Y', 'X is replaced by Y', 'change X to Y' and
    'X turns into Y' into Y."""
    head = tokens[0] if tokens else ""
    if head in {"replace", "swap", "substitute", "exchange"} and "with" in tokens:
        return tokens[tokens.index("with") + 1 :]
    if head in {"swap", "exchange", "trade", "switch"} and "for" in tokens:
        at = tokens.index("for")
        return _name_ones(tokens[at + 1 :], tokens[1:at])
    if head in {"prefer", "prefers", "preferred"}:  # "prefer leather over suede"
        for marker in ("over", "to"):
            if marker in tokens:
                return tokens[: tokens.index(marker)]
    for i in range(1, len(tokens) - 1):
        if tokens[i] in {"replaced", "substituted"} and tokens[i + 1] in {"by", "with"}:
            return [*_before_subject(tokens[:i]), *tokens[i + 2 :]]
    for i, tok in enumerate(tokens):
        if tok in {"change", "changes", "changed", "turn", "turns", "turned", "transform",
                   "transformed", "switch", "convert", "converted", "becomes", "become"}:
            rest = tokens[i + 1 :]
            for marker in ("into", "to"):
                if marker in rest:
                    return rest[rest.index(marker) + 1 :]
    return tokens


def _before_subject(head: list[str]) -> list[str]:
    """What a clause asks before 'and the X (is) replaced by': 'no lamps and the couch' ->
    'no lamps and'. Without an article after the last 'and', the whole head is the subject
    ("one large and five small screens")."""
    for i in range(len(head) - 2, 0, -1):
        if head[i] == "and":
            return head[: i + 1] if head[i + 1] in lx.ARTICLES | lx.POSSESSIVES else []
    return []


def _name_ones(new: list[str], old: list[str]) -> list[str]:
    """'black ones' in 'swap the blue jeans for black ones' -> 'black jeans'."""
    if new and new[-1] in {"one", "ones"} and old:
        return [*new[:-1], old[-1]]
    return new


def is_removal(tokens: list[str]) -> bool:
    """True when the clause asks to remove something (it names what the target lacks)."""
    if not tokens:
        return False
    if tokens[0] in lx.REMOVAL_VERBS:  # "take the photo from afar" frames, removes nothing
        return not (tokens[0] == "take" and any(t in lx.PICTURE_NOUNS for t in tokens))
    return tokens[:2] in (["get", "rid"], ["take", "away"], ["take", "out"])


def removed_thing(tokens: list[str]) -> list[str]:
    """What a removal clause takes away, as a target keyword: 'remove the laptop on the right'
    -> 'no laptop on right' (articles dropped); 'remove all animals but one' -> 'one animal'."""
    words = tokens[1:]
    while words and words[0] in {"rid", "of", "away", "out", "off", "all"} | lx.ARTICLES:
        words = words[1:]
    if words[:2] == ["one", "of"]:  # "remove one of the parrots"
        words = words[2:]
    if "from" in words:  # "remove the foliage from the image": where it was, not what
        words = words[: words.index("from")]
    words = [t for t in words if t not in lx.ARTICLES]
    if words[-2:] == ["except", "one"] and len(words) > 2:
        return ["one", _singular_noun(words[-3])]
    return ["no", *words] if words else []


def _singular_noun(word: str) -> str:
    """'animals' -> 'animal', 'buses' -> 'bus', 'mouses' -> 'mouse'; 'mice' stays: the
    '-es' plurals, then repeats.singular for the rest."""
    if word.endswith(("sses", "xes", "ches", "shes", "uses")) and not word.endswith("ouses"):
        return word[:-2]
    return singular(word)


def is_empty_answer(tokens: list[str]) -> bool:
    """True for an annotator's 'none' / 'nothing': no request at all, not a negation."""
    return tokens in (["none"], ["nothing"])


def target_clauses(text: str) -> list[list[str]]:
    """Normalised clauses of `text` that describe the target, the reference's dropped."""
    return _drop_old_state(clauses(_GOES_FROM.sub("", normalise(text))))
