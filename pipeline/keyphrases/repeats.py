"""One phrase per attribute: repeats, partial repeats and negated repeats merged."""

from __future__ import annotations

from pipeline.keyphrases import lexicon as lx


def content_key(phrase: str) -> frozenset[str]:
    """Content words of a phrase, singular and in US spelling: the identity of an attribute."""
    return frozenset(singular(lx.US_SPELLING.get(t, t)) for t in phrase.split()
                     if t not in lx.GLUE)


def singular(word: str) -> str:
    """'sleeves' -> 'sleeve'; leaves 'dress', 'less', 'bus' and short words alone ('-es'
    plurals keep their 'e': enough to tell two wordings of one attribute apart)."""
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _wording_rank(phrase: str) -> tuple[int, int]:
    """Which wording of a repeated attribute lists keep: plural, then US spelling, wins."""
    words = phrase.split()
    # Only an attribute phrase ("long sleeves") takes the plural; a bare noun said twice
    # ("a bird ... birds") keeps its first wording.
    plurals = sum(singular(t) != t for t in words) if len(words) > 1 else 0
    return plurals, -sum(t in lx.US_SPELLING for t in words)


def merge_repeats(phrases: list[str]) -> list[str]:
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


def pluralise_sleeves(phrases: list[str]) -> list[str]:
    """Write "short sleeve" as "short sleeves" when another phrase says "sleeves": a text that
    names the sleeves twice ("a short sleeve tee ... shorter sleeves") is listed in the plural."""
    if not any(p.endswith(" sleeves") for p in phrases):
        return phrases
    return [p + "s" if p.endswith(" sleeve") else p for p in phrases]


def drop_negated_repeats(phrases: list[str]) -> list[str]:
    """Drop "no sleeves" when "sleeveless" is also there: one attribute, said twice."""
    stems = {p[:-4] for p in phrases if p.endswith("less") and " " not in p}
    return [p for p in phrases if not _negates_stem(p, stems)] if stems else phrases


def _negates_stem(phrase: str, stems: set[str]) -> bool:
    """True for 'no X' / 'without Xs' where X is in `stems`."""
    words = phrase.split()
    return (len(words) == 2 and words[0] in ("no", "without")
            and (words[1] in stems or words[1].removesuffix("s") in stems))
