"""Reading the official annotation files: clear errors, and the DQU-CIR precomputed extras.

The official DQU-CIR release ships, next to each dataset's own annotations, precomputed BLIP-2
captions (`image_captions_*.json`: image name -> caption) and LLM keywords
(`keywords_in_mods_*.json`: pair key -> [modification text, ..., "kw1, kw2"]). They are read
as they are keyed; nothing is copied into the repository.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.core.params import PrepareParams

# How many offending records an error message lists before it says "and N more".
MAX_LISTED = 10


class AnnotationError(ValueError):
    """An annotation file is missing or malformed; the message names the file and the records."""


def dataset_root(params: PrepareParams) -> Path:
    """prepare.root as a Path; error when unset or not a folder."""
    if not params.root:
        raise AnnotationError(
            f"prepare.root: the {params.dataset} adapter needs the dataset folder; "
            f"run `dqu prepare --dataset {params.dataset} --root DIR` or set prepare.root"
        )
    root = Path(params.root).expanduser()
    if not root.is_dir():
        raise AnnotationError(f"prepare.root: {root} is not a folder (check the path)")
    return root


def search_dirs(params: PrepareParams, root: Path, *subdirs: str) -> list[Path]:
    """Where the official extras may live: prepare.provided_dir, then root/<subdir>, then root."""
    dirs = [Path(params.provided_dir).expanduser()] if params.provided_dir else []
    return dirs + [root / sub for sub in subdirs] + [root]


def find_file(name: str, dirs: Iterable[Path]) -> Path | None:
    """The first existing `dir/name`, or None."""
    for folder in dirs:
        if (folder / name).is_file():
            return folder / name
    return None


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON annotation file; error naming the file and what it should be."""
    if not path.is_file():
        raise AnnotationError(f"{path}: {what} not found; check prepare.root and the layout")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: {what} is not valid JSON ({err})") from err


def read_lines(path: Path, what: str) -> list[str]:
    """Non-empty stripped lines of a text annotation file."""
    if not path.is_file():
        raise AnnotationError(f"{path}: {what} not found; check prepare.root and the layout")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def expect(data: Any, kind: type, path: Path, shape: str) -> Any:
    """`data` when it is a `kind`, else an error quoting the expected shape."""
    if not isinstance(data, kind):
        raise AnnotationError(f"{path}: expected {shape}, found a {type(data).__name__}")
    return data


def fail_listing(path: Path, problem: str, records: list[str], fix: str) -> None:
    """Raise one error naming the file, the problem and the offending records (when any)."""
    if not records:
        return
    listed = ", ".join(records[:MAX_LISTED])
    more = f" and {len(records) - MAX_LISTED} more" if len(records) > MAX_LISTED else ""
    raise AnnotationError(f"{path}: {problem}: {listed}{more}. {fix}")


def record_fields(entries: list, path: Path, fields: tuple[str, ...]) -> list[dict]:
    """The entries of an annotation list, checked to be objects holding `fields`."""
    bad = [
        f"#{i}" for i, entry in enumerate(entries)
        if not isinstance(entry, dict) or any(f not in entry for f in fields)
    ]
    fail_listing(path, f"entries without the fields {list(fields)}", bad,
                 "Restore the official file")
    return entries


def load_corrections(params: PrepareParams, dirs: list[Path], official_name: str) -> dict:
    """prepare.correction_dict, else the official dictionary when present, else no correction."""
    if params.correction_dict:
        path = Path(params.correction_dict).expanduser()
    else:
        found = find_file(official_name, dirs)
        if found is None:
            print(f"[prepare] no {official_name} found: modification texts are not "
                  "typo-corrected (build one with `dqu spelling`, set prepare.correction_dict)")
            return {}
        path = found
    data = expect(read_json(path, "typo correction dictionary"), dict, path,
                  "an object {misspelt word: correction}")
    bad = [repr(k) for k, v in data.items() if not isinstance(v, str)]
    fail_listing(path, "corrections that are not strings", bad, "Fix the dictionary")
    return data


def parse_keywords(value: Any) -> list[str] | None:
    """Keywords of one `keywords_in_mods_*` entry: the last element, split on ", " like the official
    drawing code (empty pieces dropped); None when the entry is malformed."""
    if not isinstance(value, list) or not value or not isinstance(value[-1], str):
        return None
    return [piece.strip() for piece in value[-1].split(", ") if piece.strip()]


class ProvidedExtras:
    """Optional official captions and keywords for one split; absent files give None per lookup."""

    def __init__(self, captions_file: Path | None, keywords_file: Path | None) -> None:
        self.captions_file = captions_file
        self.keywords_file = keywords_file
        self._captions = (
            expect(read_json(captions_file, "image captions"), dict, captions_file,
                   "an object {image name: caption}")
            if captions_file else {}
        )
        self._keywords = (
            expect(read_json(keywords_file, "keywords"), dict, keywords_file,
                   'an object {pair key: [text, ..., "kw1, kw2"]}')
            if keywords_file else {}
        )

    def caption(self, image_name: str) -> str | None:
        """The precomputed caption of an image, or None."""
        caption = self._captions.get(image_name)
        return caption if isinstance(caption, str) else None

    def keywords(self, key: str) -> list[str] | None:
        """The precomputed keywords under the official pair key, or None."""
        return parse_keywords(self._keywords[key]) if key in self._keywords else None
