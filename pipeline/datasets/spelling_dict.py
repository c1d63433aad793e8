"""`dqu spelling`: a typo correction dictionary {word: correction} built from annotation files.

The official DQU-CIR dictionaries (`correction_dict_{cat}.json`) are used as given through
prepare.correction_dict; this builds an equivalent one for data that has none. Words are found
the way the adapters normalise text (text_norm.py); a word is corrected only when it is rare in
the annotations (frequent words are the domain's vocabulary even if no dictionary knows them)
and pyspellchecker, guarded by the keyword extractor's TypoCorrector, offers a correction.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.datasets.text_norm import normalize_caption
from trainer.util.atomic import write_json

# Keys holding free text in the official annotation files (FashionIQ, Shoes, CIRR) and ours.
TEXT_KEYS = ("captions", "RelativeCaption", "caption", "modification", "text")


def texts_in(path: Path) -> Iterator[str]:
    """Every annotation text of a JSON / JSONL file (values under TEXT_KEYS), else each line."""
    raw = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            yield from _strings(json.loads(raw))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
    elif suffix == ".jsonl":
        for n, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                try:
                    yield from _strings(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {n} is not JSON ({err})") from err
    else:
        yield from (line for line in raw.splitlines() if line.strip())


def _strings(data: Any, keep: bool = False) -> Iterator[str]:
    """Strings under TEXT_KEYS anywhere in `data` (all strings of a top-level string list)."""
    if isinstance(data, str):
        if keep:
            yield data
    elif isinstance(data, list):
        top_level_texts = keep or all(isinstance(x, str) for x in data)
        for item in data:
            yield from _strings(item, top_level_texts)
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, key in TEXT_KEYS)


def word_counts(files: Iterable[Path]) -> Counter:
    """How often each normalised word occurs across the files."""
    counts: Counter = Counter()
    for path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: annotation file not found")
        for text in texts_in(Path(path)):
            counts.update(normalize_caption(text, {}).split())
    return counts


def build_corrections(files: Iterable[Path], min_count: int = 3, corrector=None) -> dict[str, str]:  # noqa: ANN001
    """{misspelt word: correction} for the rare words pyspellchecker can correct."""
    if corrector is None:
        from pipeline.keyphrases.spelling import TypoCorrector

        corrector = TypoCorrector()
    corrections = {}
    for word, count in sorted(word_counts(files).items()):
        if count >= min_count:
            continue
        fixed = corrector(word)
        if fixed and fixed != word:
            corrections[word] = fixed
    return corrections


def write_corrections(corrections: dict[str, str], out: Path) -> None:
    """Write the dictionary as sorted JSON (the shape prepare.correction_dict reads)."""
    write_json(out, corrections)
