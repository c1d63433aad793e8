"""Typo correction for single words, guarded so names and rare words are left alone."""

from __future__ import annotations

from functools import lru_cache

# British spellings and their US forms: "grey" and "gray" in one text are one attribute.
US_SPELLING = {
    "grey": "gray", "greyish": "grayish", "colour": "color", "colours": "colors",
    "coloured": "colored", "colourful": "colorful", "multicoloured": "multicolored",
    "centre": "center", "centred": "centered", "favourite": "favorite", "jewellery": "jewelry",
    "pyjamas": "pajamas", "woollen": "woolen", "colourless": "colorless", "tyre": "tire",
    "tyres": "tires", "theatre": "theater", "aeroplane": "airplane", "aluminium": "aluminum",
}

# Short words and anything with digits are too ambiguous to correct safely.
_MIN_LEN = 4


class TypoCorrector:
    """Correct a misspelt word to a known one at edit distance 1, preferring domain words.

    Domain words are the words of the reference keyword lists the tagger learned from (stored
    with it), unless `domain_words` is given.
    """

    def __init__(self, extra_known: frozenset[str] = frozenset(),
                 domain_words: frozenset[str] | None = None) -> None:
        from spellchecker import SpellChecker

        if domain_words is None:
            from pipeline.keyphrases.tagger import default_tagger_path, load_tagger

            domain_words = load_tagger(default_tagger_path()).vocabulary
        self.domain_words = domain_words

        # Distance 1 only: distance 2 costs ~0.4 s per unknown word (names, brands) and
        # mostly "corrects" those into unrelated frequent words.
        self._spell = SpellChecker(distance=1)
        # British spellings are spellings, not typos ("pyjamas", "colour").
        self._known_extra = extra_known | domain_words | frozenset(US_SPELLING)
        self.correct = lru_cache(maxsize=65536)(self._correct)

    def __call__(self, word: str) -> str:
        """The corrected spelling of `word` (itself when known or uncorrectable)."""
        return self.correct(word)

    def is_known(self, word: str) -> bool:
        """True when `word` is a dictionary or domain word."""
        return word in self._known_extra or bool(self._spell.known([word]))

    def _correct(self, word: str) -> str:
        if len(word) < _MIN_LEN or not word.isalpha() or self.is_known(word):
            return word
        options = self._spell.candidates(word) or set()
        options = {w for w in options if w != word}
        if not options:
            return _nearest_domain_word(word, self.domain_words)
        options = {w for w in options if _plausible_typo(word, w)}
        domain = sorted(w for w in options if w in self.domain_words)
        if domain:
            return domain[0]
        # Several equally near words ("jimi": "jim", "mimi") mark a name or a rare word more
        # often than a typo; a typo of an ordinary word has one ("diffrent": "different").
        return options.pop() if len(options) == 1 else word


def _plausible_typo(word: str, fix: str) -> bool:
    """False for edits that make another word rather than fix a slip of the keys.

    Dropping a first or last letter ("xbox" -> "box", "flowy" -> "flow"), adding a first
    letter ("ombre" -> "hombre") or adding or dropping a plural "s" changes the word; an
    apostrophe ("ramones" -> "ramon's") turns it into a possessive.
    """
    if not fix.isalpha() or fix in (word[1:], word[:-1]) or word == fix[1:]:
        return False
    return fix != word + "s" and word != fix + "s"


def _nearest_domain_word(word: str, domain_words: frozenset[str]) -> str:
    """A domain word at edit distance 2 with the same first letter, else `word` unchanged."""
    best = [w for w in sorted(domain_words)
            if w[0] == word[0] and abs(len(w) - len(word)) <= 2 and _within_two(word, w)]
    return best[0] if len(best) == 1 else word


def _within_two(a: str, b: str) -> bool:
    """True when the Levenshtein distance between `a` and `b` is at most 2."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > 2:
            return False
        prev = cur
    return prev[-1] <= 2
