"""One chunk trimmed and rewritten into keyword phrases, one per attribute."""

from __future__ import annotations

from pipeline.keyphrases import lexicon as lx


def strip_edges(tokens: list[str]) -> list[str]:
    """Drop request verbs, copulas, articles and fillers at the start and fillers at the end."""
    start_drop = ({"with", "w"} | lx.REQUEST_VERBS | lx.COPULAS | lx.POSSESSION_VERBS | lx.ARTICLES
                  | lx.POSSESSIVES | lx.LEAD_FILLERS | lx.PRONOUNS)
    i = 0
    while i < len(tokens) and tokens[i] in start_drop and not _is_count(tokens, i):
        i += 1
    tokens = _drop_framing(tokens[i:])
    end_drop = lx.TRAIL_FILLERS | lx.PREPOSITIONS | lx.ARTICLES | lx.PRONOUNS | {"with", "w"}
    while tokens and tokens[-1] in end_drop:
        tokens = tokens[:-1]
    # "on it", "in color": trailing prepositional fillers.
    while len(tokens) >= 2 and tokens[-2] in lx.PREPOSITIONS and tokens[-1] in lx.TRAIL_OBJECTS:
        tokens = tokens[:-2]
    # "logo on the shirt": the place is the item itself ("on top" is a place, so "top" stays).
    j = len(tokens) - 2
    while j > 0 and tokens[j] in lx.ARTICLES:
        j -= 1
    if (j > 0 and tokens[j] in lx.PREPOSITIONS and tokens[-1] in lx.GARMENT_NOUNS
            and tokens[-1] not in ("top", "tops")):
        tokens = tokens[:j]
    if len(tokens) >= 2 and tokens[-1] in lx.COLOUR_NOUNS and tokens[-2] in lx.COLOURS:
        tokens = tokens[:-1]
    return tokens


# "do not want stripes" asks for "no stripes", as "does not have" does.
_WANTS = frozenset({"want", "wants", "need", "needs", "like"})


def _drop_framing(tokens: list[str]) -> list[str]:
    """'take the picture closer', 'picture taken closer' -> 'closer': how the photo is taken is
    said by what follows."""
    if tokens[:1] and tokens[0] in {"take", "took", "taking"}:
        rest = tokens[1:]
        while rest and rest[0] in lx.ARTICLES:
            rest = rest[1:]
        return rest[1:] if len(rest) > 1 and rest[0] in lx.PICTURE_NOUNS else tokens
    if len(tokens) > 2 and tokens[0] in lx.PICTURE_NOUNS and tokens[1] == "taken":
        return tokens[2:]
    return tokens


def _is_count(tokens: list[str], i: int) -> bool:
    """True for the 'one' of 'one more dog', 'only one tower': a number, kept as lists keep
    'two dogs'; not for 'one that is red', 'one of them' or a trailing 'one'."""
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    return (tokens[i] == "one" and bool(nxt) and nxt not in _NOT_COUNTED
            and nxt not in lx.PREPOSITIONS and nxt not in lx.ARTICLES
            and nxt not in lx.COPULAS and nxt not in lx.POSSESSION_VERBS)


_NOT_COUNTED = frozenset({"that", "which", "who", "with", "w", "and", "but", "or", "is"})


def render(tokens: list[str]) -> list[str]:
    """Rewrite a chunk into the form keyword lists use ("long sleeved" -> "long sleeves")."""
    if tokens and tokens[0] == "without":
        tokens = ["no", *[t for t in tokens[1:] if t not in lx.ARTICLES]]
    # "does not have sleeves" / "not sleeved" -> "no sleeves"
    if tokens[:2] in (["does", "not"], ["do", "not"], ["did", "not"]):
        tokens = tokens[1:]
    if tokens[:1] == ["not"] and len(tokens) > 1 and tokens[1] in lx.POSSESSION_VERBS | _WANTS:
        tokens = ["no", *[t for t in tokens[2:] if t not in lx.ARTICLES]]
    if tokens[:2] == ["not", "sleeved"]:
        tokens = ["no", "sleeves", *tokens[2:]]
    out = []
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else ""
        if tok == "sleeved" and prev and prev not in lx.PREPOSITIONS:
            tok = "sleeves"
        out.append(tok)
    # A trailing garment noun adds nothing once an attribute precedes it ("blue shirt").
    if (len(out) >= 2 and out[-1] in lx.GARMENT_NOUNS and out[-2] not in lx.ARTICLES
            and out[-2] not in lx.GARMENT_COMPOUND_HEADS):
        out = out[:-1]
    return out


_SLEEVE_NOUNS = frozenset({"sleeve", "sleeves"})


def split_colour_list(tokens: list[str]) -> list[list[str]]:
    """Split 'darker and black' and 'red white and blue' lists; keep a pair of hues ('black and
    white') whole, as it names one colour scheme."""
    if "and" not in tokens or not _is_colour_run(tokens):
        return [tokens]
    items: list[list[str]] = [[]]
    for i, tok in enumerate(tokens):
        if tok == "and":
            items.append([])
            continue
        # "red white and blue": two basic hues side by side are two colours of a list.
        if i and tok in lx.BASIC_HUES and tokens[i - 1] in lx.BASIC_HUES:
            items.append([])
        items[-1].append(tok)
    items = [item for item in items if item]
    # A bare lightness word ("darker") is a request of its own, not half of a colour scheme.
    if len(items) > 2 or any(len(item) == 1 and item[0] in lx.LIGHTNESS for item in items):
        return items
    return [tokens]


def split_negated_list(tokens: list[str]) -> list[list[str]]:
    """'no buttons or collar' -> 'no buttons', 'no collar': the negation covers each item."""
    if tokens[:1] != ["no"] or "or" not in tokens or any(t in lx.PREPOSITIONS for t in tokens):
        return [tokens]
    items: list[list[str]] = [[]]
    for tok in tokens[1:]:
        if tok == "or":
            items.append([])
        elif tok not in lx.ARTICLES:
            items[-1].append(tok)
    return [["no", *item] for item in items if item]


def _is_colour_run(tokens: list[str]) -> bool:
    """True for 'black', 'black and white', 'dark blue': colour words and 'and' only."""
    return (bool(tokens) and tokens[0] in lx.COLOURS and tokens[-1] in lx.COLOURS
            and all(t in lx.COLOURS or t == "and" for t in tokens))


def split_attributes(tokens: list[str]) -> list[list[str]]:
    """Split a stack of attributes ('plain black v neck') into one phrase per attribute."""
    # "large black", "short red": the size and the colour are two attributes.
    if len(tokens) >= 2 and tokens[0] in lx.GARMENT_SIZES and _is_colour_run(tokens[1:]):
        return [tokens[:1], tokens[1:]]
    if len(tokens) < 3:
        return [tokens]
    # "green colored image" -> "green", "image"; "lighter shade of blue" is one colour.
    for i in range(1, len(tokens) - 1):
        if (tokens[i] in lx.COLOUR_NOUNS and _is_colour_run(tokens[:i])
                and tokens[i + 1] != "of"):
            return [tokens[:i], *split_attributes(tokens[i + 1 :])]
    # "short sleeves white" -> "short sleeves", "white"
    for i in range(1, len(tokens) - 1):
        if tokens[i] in _SLEEVE_NOUNS and tokens[i - 1] in lx.SLEEVE_LENGTHS:
            return [*split_attributes(tokens[: i - 1]), tokens[i - 1 : i + 1],
                    *split_attributes(tokens[i + 1 :])]
    for i in range(2, len(tokens) + 1):
        if tokens[i - 1] in _SLEEVE_NOUNS and tokens[i - 2] in lx.SLEEVE_LENGTHS and i > 2:
            return [*split_attributes(tokens[: i - 2]), tokens[i - 2 : i]]
    # A leading colour before a garment cut ("black v neck"), but not before a print or an
    # object it describes ("white bunny rabbit").
    run = 0
    while run < len(tokens) and (tokens[run] in lx.COLOURS or tokens[run] == "and"):
        run += 1
    if (0 < run and len(tokens) - run >= 2 and _is_colour_run(tokens[:run])
            and tokens[run] in lx.CUT_WORDS):
        return [tokens[:run], *split_attributes(tokens[run:])]
    if tokens[0] in lx.STYLE_WORDS and len(tokens) >= 3:
        return [tokens[:1], *split_attributes(tokens[1:])]
    return [tokens]
