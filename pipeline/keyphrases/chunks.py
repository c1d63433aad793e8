"""One clause cut into attribute chunks: at linkers, copulas, negations, verbs and places."""

from __future__ import annotations

from pipeline.keyphrases import lexicon as lx


def split_on_linkers(tokens: list[str]) -> list[list[str]]:
    """Split at linkers, keeping colour pairs ("black and white") together."""
    chunks: list[list[str]] = [[]]
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else ""
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in ("and", "&", "or") and prev in lx.COLOURS and nxt in lx.COLOURS:
            chunks[-1].append(tok)
            continue
        if tok in lx.SPLITTERS:
            chunks.append([])
            continue
        chunks[-1].append(tok)
    return [c for c in chunks if c]


def _split_on_copula(tokens: list[str]) -> list[list[str]]:
    """Split 'SUBJECT is X' into the subject and X; both describe the target. A part said to
    have a quality ("the sleeves are longer", "logo is slightly darker") is one attribute,
    written the way lists write it: "longer sleeves"."""
    for i, tok in enumerate(tokens):
        if i and tok in lx.COPULAS | lx.POSSESSION_VERBS and tokens[i - 1] not in lx.NEGATIONS:
            subject, rest = tokens[:i], tokens[i + 1 :]
            part = _subject_noun(subject)
            if tok in lx.COPULAS and _is_bare_part(part):
                quality = rest[1:] if rest[:1] == ["in"] else rest  # "text is in white"
                if _is_quality(quality):
                    return [[*quality, *_without_colour_noun(part)]]
            return [subject, *_split_on_copula(rest)]
    return [tokens]


def _subject_noun(subject: list[str]) -> list[str]:
    """'has a logo that' -> 'logo': the noun phrase a relative or main clause is about."""
    skip = lx.ARTICLES | lx.POSSESSIVES | {"which", "who"}
    words = [t for t in subject if t not in skip]
    while words and words[0] in lx.POSSESSION_VERBS | lx.REQUEST_VERBS | lx.COPULAS:
        words = words[1:]
    return words


def _without_colour_noun(part: list[str]) -> list[str]:
    """'background color' -> 'background'; 'the color', 'shirt color' -> nothing: there the
    colour is the quality itself ("the color is darker" -> "darker")."""
    rest = [t for t in part if t not in lx.COLOUR_NOUNS]
    if len(rest) == len(part):
        return part
    return rest if rest and all(t in lx.ITEM_PARTS or t in lx.PICTURE_REGIONS for t in rest) else []


def _is_bare_part(tokens: list[str]) -> bool:
    """True for a short noun phrase naming a part or print of the item ("the front design")."""
    return (0 < len(tokens) <= 3 and tokens[-1] in lx.ITEM_PARTS | lx.COLOUR_NOUNS
            and not any(t in lx.COLOURS or t in lx.DEGREE or t in lx.SLEEVE_LENGTHS
                        or t in lx.STYLE_WORDS or t in lx.PRONOUNS or _is_comparative(t)
                        for t in tokens))


def _is_quality(tokens: list[str]) -> bool:
    """True for a bare adjective phrase: colours, lightness, size, style and comparative words,
    scaled or not ("slightly darker", "more red")."""
    words = [t for t in tokens if t not in lx.INTENSIFIERS and t not in lx.DEGREE]
    return (bool(words) and len(tokens) <= 4
            and all(t in lx.INTENSIFIERS or t in lx.DEGREE or t in lx.COLOURS or t == "and"
                    or t in lx.LIGHTNESS or t in lx.PART_ADJECTIVES or t in lx.STYLE_WORDS
                    or _is_comparative(t)
                    for t in tokens))


def _is_comparative(tok: str) -> bool:
    """True for 'longer', 'busier', 'thinner'; not for 'sweater', 'letter' or 'border'."""
    return tok.endswith("er") and len(tok) > 4 and tok not in lx.NOT_COMPARATIVES


def _split_on_negation(tokens: list[str]) -> list[list[str]]:
    """Split 'black without a collar' into 'black' and 'without a collar'."""
    for i, tok in enumerate(tokens):
        if i and tok in ("without", "no", "not") and tokens[i - 1] not in _NEG_GLUE:
            return [tokens[:i], *_split_on_negation(tokens[i:])]
    return [tokens]


_NEG_GLUE = lx.COPULAS | lx.POSSESSION_VERBS | lx.ARTICLES | {"and", "but", "with", "or", "do",
                                                                "does", "did", "has", "have"}


def _verb_form(tok: str) -> bool:
    """True for an '-ing' verb or a third-person form of a common action verb."""
    if tok in lx.ING_NOUNS:
        return False
    if tok.endswith("ing") and len(tok) > 5:
        return True
    if tok.endswith("s") and (tok[:-1] in lx.ACTION_VERBS or (tok.endswith("es")
                                                                and tok[:-2] in lx.ACTION_VERBS)):
        return True
    return tok.endswith("ies") and tok[:-3] + "y" in lx.ACTION_VERBS


def _split_on_verb(tokens: list[str]) -> list[list[str]]:
    """Split 'black dog sleeping on a couch' into the subject and its action."""
    for i in range(1, len(tokens)):
        prev = tokens[i - 1]
        if (_verb_form(tokens[i]) and prev not in lx.PRENOMINAL and prev not in lx.ARTICLES
                and prev not in lx.PREPOSITIONS and prev not in lx.COLOURS
                and prev not in lx.POSSESSIVES and prev not in lx.DEGREE
                and prev not in lx.NEGATIONS):
            return [tokens[:i], tokens[i:]]
    return [tokens]


def is_same_request(tokens: list[str]) -> bool:
    """True for a chunk that only says the target looks like the reference."""
    content = [t for t in tokens if t not in lx.GLUE and t not in lx.GARMENT_NOUNS
               and t not in lx.ARTICLES and t not in lx.SAME_OF]
    return (all(t in lx.SAME_CUES for t in content)
            and any(t not in lx.SAME_REQUEST_WORDS for t in content))


_PLACE_PREPS = frozenset({"on", "in", "at", "by", "near", "next", "under", "over", "above", "below",
                          "behind", "beside", "around", "across", "along", "against", "inside",
                          "outside", "into", "onto", "between", "among", "toward", "towards",
                          "through", "underneath", "beneath", "atop"})


def _is_coloured_item(tokens: list[str]) -> bool:
    """True for 'white shirt', 'black tee shirt': colours naming the item, as in 'red sleeves
    on a white shirt', where the place phrase says the item is white."""
    return (len(tokens) >= 2 and tokens[-1] in lx.GARMENT_NOUNS and tokens[0] in lx.COLOURS
            and all(t in lx.COLOURS or t in lx.GARMENT_NOUNS or t == "and" for t in tokens))


def _split_on_preposition(tokens: list[str]) -> list[list[str]]:
    """Split 'red ball next to the dog' into the thing and where it is."""
    if not tokens:
        return [tokens]
    for i in range(1, len(tokens) - 1):
        if tokens[i] in _PLACE_PREPS and tokens[i - 1] not in lx.PREPOSITIONS | lx.ARTICLES:
            head = tokens[:i]
            obj = [t for t in tokens[i + 1 :] if t not in lx.ARTICLES and t not in lx.POSSESSIVES]
            if obj and (obj[0] in lx.TRAIL_OBJECTS or obj[0] in lx.PART_LOCATIONS):
                continue
            # "logo on the shirt": the place is the item itself.
            if obj and all(t in lx.GARMENT_NOUNS for t in obj):
                continue
            if all(t in lx.GLUE or t in lx.FILLER_HEADS for t in head):
                continue
            if tokens[i] == "on" and _is_coloured_item(obj):
                return [head, obj]
            return [head, *_split_on_preposition(tokens[i:])]
    return [tokens]


_GAZE_WORDS = frozenset({"up", "down", "away", "out", "back", "forward", "straight", "around",
                         "ahead", "right", "left", "sideways", "over", "into", "directly"})


def _is_direction(tok: str) -> bool:
    """True for where a gaze goes: 'up', 'left', 'slightly', 'downward', 'at'."""
    return (tok in _GAZE_WORDS or tok in lx.PREPOSITIONS
            or tok.endswith(("ly", "ward", "wards")))


def _drop_looking(tokens: list[str]) -> list[str]:
    """'more sporty looking', 'busy looking pattern': 'looking' there only makes an adjective;
    before a direction or a place ('dog looking at the camera') it is the action, and stays."""
    out = []
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "looking" and i and tokens[i - 1] not in lx.ARTICLES and not _is_direction(nxt):
            continue
        out.append(tok)
    return out


def sub_chunks(tokens: list[str]) -> list[list[str]]:
    """Cut one linker-free chunk at copulas, negations and verbs; a bare action stays with its
    subject ("the dog is sitting on a bed" -> "dog sitting", "on a bed")."""
    out: list[list[str]] = []
    for part in _split_on_copula(_drop_looking(tokens)):
        for neg in _split_on_negation(part):
            for verb in _split_on_verb(neg):
                for piece in _split_on_preposition(verb):
                    if len(piece) == 1 and _verb_form(piece[0]) and out and _names_a_thing(out[-1]):
                        out[-1] = [*out[-1], *piece]
                    else:
                        out.append(piece)
    return out


def _names_a_thing(tokens: list[str]) -> bool:
    """True for a subject a bare action can join ('the dog'): not a place, verb or negation."""
    words = [t for t in tokens if t not in lx.ARTICLES and t not in lx.POSSESSIVES]
    return (bool(words) and words[0] not in lx.PREPOSITIONS and words[0] not in lx.NEGATIONS
            and not any(_verb_form(t) or t in _CLAUSE_WORDS for t in words)
            and not all(t in lx.COPULAS | lx.REQUEST_VERBS | lx.PRONOUNS for t in words))


# Words that open a clause of their own ("where they", "the woman who"): no subject to join.
_CLAUSE_WORDS = (lx.PRONOUNS - {"one"}) | {"who", "which", "where", "when", "while", "whose"}


def is_garment_only(tokens: list[str]) -> bool:
    """True for a chunk naming only the item or a bare region ("the shirt", "in the background")."""
    content = [t for t in tokens if t not in lx.ARTICLES and t not in lx.PREPOSITIONS]
    return bool(content) and all(t in lx.GARMENT_NOUNS or t in lx.PICTURE_NOUNS
                                 or t in lx.PICTURE_REGIONS for t in content)
