"""Candidate keyword phrases from one modification text, by shallow rules over word lists.

The text is cut into clauses (punctuation), what the target must no longer show is dropped
("instead of X", "remove X", "there was X - now"), clauses are cut into attribute chunks at
linkers ("and", "with", "but") and copulas, and each chunk is trimmed of request verbs,
articles and fillers. Phrases come back in text order, repeats merged.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pipeline.keyphrases import lexicon as lx

SAME = "same"

# Clause breaks: sentence punctuation and a spaced dash ("there was X - now Y").
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\"]+|\s+-+\s+|\s+--+|--+\s+")
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")

Corrector = Callable[[str], str]

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
    text = re.sub(r"\b(\w+)n't\b", r"\1 not", text)
    # The apostrophe is often typed as a space: "doesn t have a collar".
    text = _SPACED_NOT.sub(r"\1 not", text)
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
        if tokens[:2] in (["instead", "of"], ["rather", "than"], ["unlike", "the"]):
            continue
        if tokens[:1] == ["unlike"] and later:  # "unlike two dogs, I want a llama"
            continue
        if any(_starts_now(t) for t in later):  # "X sat on grass - now it runs"
            continue
        if tokens[:3] in (["in", "place", "of"], ["as", "opposed", "to"]):
            continue
        kept.append(tokens)
    return kept or parts


def _cut_instead(tokens: list[str]) -> list[str]:
    """Keep the part of a clause before 'instead of' / 'rather than' (the new state)."""
    for i in range(len(tokens) - 1):
        pair = (tokens[i], tokens[i + 1])
        if pair in (("instead", "of"), ("rather", "than"), ("not", "like")):
            return tokens[:i]
    return tokens


def _cut_than(tokens: list[str]) -> list[str]:
    """'more grey than blue' -> 'more grey': what follows 'than' is what the reference shows;
    'more than one dog' is a count and stays."""
    for i in range(1, len(tokens)):
        if tokens[i] == "than" and tokens[i - 1] not in lx.DEGREE | {"other", "rather"}:
            return tokens[:i]
    return tokens


def _cut_rewrites(tokens: list[str]) -> list[str]:
    """Turn 'replace X with Y', 'change X to Y', 'X turns into Y' into Y."""
    head = tokens[0] if tokens else ""
    if head in {"replace", "swap", "substitute", "exchange"} and "with" in tokens:
        return tokens[tokens.index("with") + 1 :]
    for i, tok in enumerate(tokens):
        if tok in {"change", "changes", "changed", "turn", "turns", "turned", "transform",
                   "transformed", "switch", "convert", "converted", "becomes", "become"}:
            rest = tokens[i + 1 :]
            for marker in ("into", "to"):
                if marker in rest:
                    return rest[rest.index(marker) + 1 :]
    return tokens


def _is_removal(tokens: list[str]) -> bool:
    """True when the clause asks to remove something (it names what the target lacks)."""
    if not tokens:
        return False
    if tokens[0] in lx.REMOVAL_VERBS:
        return not (tokens[0] == "take" and "picture" in tokens)
    return tokens[:2] in (["get", "rid"], ["take", "away"], ["take", "out"])


def _is_empty_answer(tokens: list[str]) -> bool:
    """True for an annotator's 'none' / 'nothing': no request at all, not a negation."""
    return tokens in (["none"], ["nothing"])


def _split_on_and(tokens: list[str]) -> list[list[str]]:
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
    """Split 'SUBJECT is X' into the subject and X; both describe the target."""
    for i, tok in enumerate(tokens):
        if i and tok in lx.COPULAS | lx.POSSESSION_VERBS and tokens[i - 1] not in lx.NEGATIONS:
            return [tokens[:i], *_split_on_copula(tokens[i + 1 :])]
    return [tokens]


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


def _strip_edges(tokens: list[str]) -> list[str]:
    """Drop request verbs, copulas, articles and fillers at the start and fillers at the end."""
    start_drop = ({"with", "w"} | lx.REQUEST_VERBS | lx.COPULAS | lx.POSSESSION_VERBS | lx.ARTICLES
                  | lx.POSSESSIVES | lx.LEAD_FILLERS | lx.PRONOUNS)
    i = 0
    while i < len(tokens) and tokens[i] in start_drop:
        i += 1
    tokens = tokens[i:]
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


def _render(tokens: list[str]) -> list[str]:
    """Rewrite a chunk into the form keyword lists use ("long sleeved" -> "long sleeves")."""
    if tokens and tokens[0] == "without":
        tokens = ["no", *[t for t in tokens[1:] if t not in lx.ARTICLES]]
    # "does not have sleeves" / "not sleeved" -> "no sleeves"
    if tokens[:2] in (["does", "not"], ["do", "not"], ["did", "not"]):
        tokens = tokens[1:]
    if tokens[:1] == ["not"] and len(tokens) > 1 and tokens[1] in lx.POSSESSION_VERBS:
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


def _split_colour_list(tokens: list[str]) -> list[list[str]]:
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


def _split_negated_list(tokens: list[str]) -> list[list[str]]:
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


def _split_attributes(tokens: list[str]) -> list[list[str]]:
    """Split a stack of attributes ('plain black v neck') into one phrase per attribute."""
    if len(tokens) < 3:
        return [tokens]
    # "green colored image" -> "green", "image"; "lighter shade of blue" is one colour.
    for i in range(1, len(tokens) - 1):
        if (tokens[i] in lx.COLOUR_NOUNS and _is_colour_run(tokens[:i])
                and tokens[i + 1] != "of"):
            return [tokens[:i], *_split_attributes(tokens[i + 1 :])]
    # "short sleeves white" -> "short sleeves", "white"
    for i in range(1, len(tokens) - 1):
        if tokens[i] in _SLEEVE_NOUNS and tokens[i - 1] in lx.SLEEVE_LENGTHS:
            return [*_split_attributes(tokens[: i - 1]), tokens[i - 1 : i + 1],
                    *_split_attributes(tokens[i + 1 :])]
    for i in range(2, len(tokens) + 1):
        if tokens[i - 1] in _SLEEVE_NOUNS and tokens[i - 2] in lx.SLEEVE_LENGTHS and i > 2:
            return [*_split_attributes(tokens[: i - 2]), tokens[i - 2 : i]]
    # A leading colour before a garment cut ("black v neck"), but not before a print or an
    # object it describes ("white bunny rabbit").
    run = 0
    while run < len(tokens) and (tokens[run] in lx.COLOURS or tokens[run] == "and"):
        run += 1
    if (0 < run and len(tokens) - run >= 2 and _is_colour_run(tokens[:run])
            and tokens[run] in lx.CUT_WORDS):
        return [tokens[:run], *_split_attributes(tokens[run:])]
    if tokens[0] in lx.STYLE_WORDS and len(tokens) >= 3:
        return [tokens[:1], *_split_attributes(tokens[1:])]
    return [tokens]


def _is_same_request(tokens: list[str]) -> bool:
    """True for a chunk that only says the target looks like the reference."""
    content = [t for t in tokens if t not in lx.GLUE and t not in lx.GARMENT_NOUNS
               and t not in lx.ARTICLES]
    return bool(content) and all(t in lx.SAME_CUES for t in content)


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


def _sub_chunks(tokens: list[str]) -> list[list[str]]:
    """Cut one linker-free chunk at copulas, negations and verbs."""
    out = []
    for part in _split_on_copula(_drop_looking(tokens)):
        for neg in _split_on_negation(part):
            for verb in _split_on_verb(neg):
                out.extend(_split_on_preposition(verb))
    return out


def _is_garment_only(tokens: list[str]) -> bool:
    """True for a chunk naming only the item or a bare region ("the shirt", "in the background")."""
    content = [t for t in tokens if t not in lx.ARTICLES and t not in lx.PREPOSITIONS]
    return bool(content) and all(t in lx.GARMENT_NOUNS or t in lx.PICTURE_NOUNS
                                 or t in lx.PICTURE_REGIONS for t in content)


def content_key(phrase: str) -> frozenset[str]:
    """Content words of a phrase, singular and in US spelling: the identity of an attribute."""
    return frozenset(_singular(lx.US_SPELLING.get(t, t)) for t in phrase.split()
                     if t not in lx.GLUE)


def _singular(word: str) -> str:
    """'sleeves' -> 'sleeve'; leaves 'dress', 'less', 'bus' and short words alone."""
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _wording_rank(phrase: str) -> tuple[int, int]:
    """Which wording of a repeated attribute lists keep: plural, then US spelling, wins."""
    words = phrase.split()
    # Only an attribute phrase ("long sleeves") takes the plural; a bare noun said twice
    # ("a bird ... birds") keeps its first wording.
    plurals = sum(_singular(t) != t for t in words) if len(words) > 1 else 0
    return plurals, -sum(t in lx.US_SPELLING for t in words)


def _merge_repeats(phrases: list[str]) -> list[str]:
    """One phrase per attribute, at its first place; of two wordings ("long sleeve" / "long
    sleeves", "grey" / "gray") the plural and the US spelling are kept, as lists write them."""
    merged: list[str] = []
    where: dict[frozenset[str], int] = {}
    for phrase in phrases:
        key = content_key(phrase)
        if not key:
            continue
        if key in where:
            if _wording_rank(phrase) > _wording_rank(merged[where[key]]):
                merged[where[key]] = phrase
        elif not any(_says_less(phrase, earlier) for earlier in merged):
            where[key] = len(merged)
            merged.append(phrase)
    return merged


def _says_less(phrase: str, earlier: str) -> bool:
    """True when `phrase` repeats part of `earlier` ("solid black" ... "black"); a change of
    degree ("more red") or of polarity ("no collar" ... "collar") is a request of its own."""
    words, before = _plain_words(phrase), _plain_words(earlier)
    return words < before and bool(words & lx.NEGATIONS) == bool(before & lx.NEGATIONS)


def _plain_words(phrase: str) -> frozenset[str]:
    """Words of a phrase in US spelling, without glue but with degree words ("more")."""
    return frozenset(lx.US_SPELLING.get(t, t) for t in phrase.split()
                     if t not in lx.GLUE or t in lx.DEGREE)


def _drop_negated_repeats(phrases: list[str]) -> list[str]:
    """Drop "no sleeves" when "sleeveless" is also there: one attribute, said twice."""
    stems = {p[:-4] for p in phrases if p.endswith("less") and " " not in p}
    return [p for p in phrases if not _negates_stem(p, stems)] if stems else phrases


def _negates_stem(phrase: str, stems: set[str]) -> bool:
    """True for 'no X' / 'without Xs' where X is in `stems`."""
    words = phrase.split()
    return (len(words) == 2 and words[0] in ("no", "without")
            and (words[1] in stems or words[1].removesuffix("s") in stems))


def generate_candidates(text: str, correct: Corrector | None = None) -> list[str]:
    """Candidate keyword phrases of one modification text, in text order, repeats merged."""
    text = _GOES_FROM.sub("", normalise(text))
    parts = _drop_old_state(clauses(text))
    chunks: list[list[str]] = []
    saw_same = False
    for raw in parts:
        tokens = [correct(t) for t in raw] if correct else raw
        tokens = _cut_rewrites(_cut_instead(tokens))
        for piece in _split_on_and(tokens):
            if _is_removal(piece) or _is_empty_answer(piece):
                continue
            piece = _cut_than(piece)
            for sub in _sub_chunks(piece):
                if _is_same_request(sub):
                    saw_same = True
                    continue
                for attr in _split_attributes(_render(_strip_edges(sub))):
                    if attr and not _is_garment_only(attr):
                        for item in _split_negated_list(attr):
                            chunks.extend(_split_colour_list(item))
    phrases = _drop_negated_repeats(_merge_repeats([" ".join(c) for c in chunks]))
    # "is similar but blue and more fitted" asks for changes, not for the same item: "same" is
    # kept next to one other request at most.
    if saw_same and SAME not in phrases and len(phrases) <= 1:
        return [SAME, *phrases]
    return phrases
