"""Generic adapter: a user's own triplets from a JSONL or CSV file, plus an optional gallery.

prepare.root is the file itself or a folder holding `triplets.jsonl` or `triplets.csv`. Each
record has `reference`, `modification` and `target`; optional: `split` (default "test"),
`pair_id` (default the record number), `caption` (of the reference), `keywords` (a JSON list,
or one string "kw1, kw2") and `subset` (likewise). `reference` / `target` are image paths
relative to the file's folder (or absolute), or ids of images in the gallery folder (their path
relative to it, with or without the extension).

Gallery of every split but `train`: all images under prepare.gallery when set (relative to the
file's folder unless absolute), else the union of that split's references and targets.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline.core.params import PrepareParams
from pipeline.datasets.official import AnnotationError, dataset_root, fail_listing
from pipeline.datasets.tables import DatasetTables

REQUIRED = ("reference", "modification", "target")
NAMES = ("triplets.jsonl", "triplets.csv")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
DEFAULT_SPLIT = "test"


def build(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """Triplets as given, each image resolved to a file, galleries per evaluation split."""
    del seed, out_dir
    path = annotation_file(params)
    base = path.parent
    records = read_records(path)
    gallery_dir = _gallery_dir(params, base)
    gallery_files = index_folder(gallery_dir) if gallery_dir else {}
    aliases = {str(Path(rel).with_suffix("")): rel for rel in gallery_files} | {
        rel: rel for rel in gallery_files
    }
    paths: dict[str, str] = {rel: str(file) for rel, file in gallery_files.items()}

    def resolve(value: str) -> str:
        if value in aliases:
            return aliases[value]
        paths.setdefault(value, str(Path(value) if Path(value).is_absolute() else base / value))
        return value

    triplets = []
    for n, rec in records:
        triplets.append({
            "split": str(rec.get("split") or DEFAULT_SPLIT),
            "pair_id": str(n if rec.get("pair_id") is None else rec["pair_id"]),
            "reference_id": resolve(str(rec["reference"])),
            "target_id": resolve(str(rec["target"])),
            "modification": str(rec["modification"]),
            "caption": rec.get("caption") or None,
            "keywords": _phrases(rec.get("keywords"), path, n, "keywords"),
            "subset": _subset(rec.get("subset"), path, n, resolve),
        })
    gallery = []
    for split in dict.fromkeys(t["split"] for t in triplets):
        if split == "train":
            continue
        ids = list(gallery_files) if gallery_dir else list(dict.fromkeys(
            i for t in triplets if t["split"] == split for i in (t["reference_id"], t["target_id"])
        ))
        gallery += [{"split": split, "image_id": i} for i in ids]
    images = [{"image_id": i, "path": p} for i, p in paths.items()]
    return DatasetTables.from_rows(triplets, images, gallery)


def annotation_file(params: PrepareParams) -> Path:
    """prepare.root when it is a .jsonl/.csv file, else triplets.jsonl|csv inside it."""
    root = Path(params.root or "").expanduser()
    if params.root and root.is_file():
        return root
    folder = dataset_root(params)
    for name in NAMES:
        if (folder / name).is_file():
            return folder / name
    raise AnnotationError(f"{folder}: no {' or '.join(NAMES)}; point prepare.root at your "
                          "triplets file (JSON lines or CSV with reference, modification, target)")


def read_records(path: Path) -> list[tuple[int, dict]]:
    """(record number from 1, record) of a JSONL or CSV file; error listing malformed records."""
    text = path.read_text(encoding="utf-8")
    records: list[tuple[int, dict]] = []
    bad: list[str] = []
    if path.suffix.lower() == ".csv":
        rows = csv.DictReader(text.splitlines())
        records = [(n, {k: v for k, v in row.items() if v not in ("", None)})
                   for n, row in enumerate(rows, start=1)]
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad.append(f"line {n} (not JSON)")
                continue
            if not isinstance(record, dict):
                bad.append(f"line {n} (not an object)")
                continue
            records.append((n, record))
    bad += [f"record {n} (missing {[f for f in REQUIRED if not rec.get(f)]})"
            for n, rec in records if not all(rec.get(f) for f in REQUIRED)]
    fail_listing(path, "malformed records", bad,
                 f"Each record needs non-empty {', '.join(REQUIRED)}")
    if not records:
        raise AnnotationError(f"{path}: no triplets found")
    return records


def index_folder(folder: Path) -> dict[str, Path]:
    """Relative posix path -> file of every image under `folder`, sorted."""
    if not folder.is_dir():
        raise AnnotationError(f"prepare.gallery: {folder} is not a folder")
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    }


def _gallery_dir(params: PrepareParams, base: Path) -> Path | None:
    if not params.gallery:
        return None
    folder = Path(params.gallery).expanduser()
    return folder if folder.is_absolute() else base / folder


def _phrases(value: object, path: Path, n: int, field: str) -> list[str] | None:
    """A list of strings from a JSON list or one comma-separated string; None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.lstrip().startswith("[") else None
        except json.JSONDecodeError:
            parsed = None
        value = parsed if parsed is not None else [p.strip() for p in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AnnotationError(f"{path}: record {n}: {field} must be a list of strings or one "
                              "comma-separated string")
    return [v.strip() for v in value if v.strip()]


def _subset(value: object, path: Path, n: int, resolve) -> list[str] | None:  # noqa: ANN001
    members = _phrases(value, path, n, "subset")
    return None if members is None else [resolve(m) for m in members]
