"""Fashion200K adapter, TIRG protocol.

Official layout under prepare.root:
  labels/*_{train,test}_detect_all.txt   "file_path<TAB>detection score<TAB>caption" per line
  test_queries.txt                       "source_file target_file" per line
  the image files, at root/<file_path>
Test queries are "replace X with Y" (X: the first source-caption word missing from the target
caption, Y: the first target word missing from the source); the gallery is every test image and
a hit is any image whose caption equals the target caption (the `evaluate` stage reads this
adapter's image_captions.parquet). TIRG samples a fresh training pair per image every epoch;
here up to prepare.train_pairs_per_image distinct targets per modifiable training image are drawn
once, seeded, by the same caption-parent rule, and `train.epoch_sampling: one_per_reference`
picks one of a source's pairs each epoch. Captions are
the dataset's own (caption.backend: provided), Y is the keyword drawn on the image.
The dataset has no validation split: `val` repeats every test query, as the official code
validates on the whole test set to pick its epoch.

As the official loader (src/datasets.py, Fashion200k): captions are stripped and '.', '?', '&',
'*' rewritten as "dotmark", "questionmark", "andmark", "starmark"; every test label line is a
gallery entry, so a file path listed twice is two gallery entries (ids `<path>` and
`<path>#2`, ...), and a query's reference and target are the path's last line (the official
file2imgid keeps the last). Training pairs use each path's first line.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa

from pipeline.core.params import PrepareParams
from pipeline.core.shards import CAPTIONS, write_table
from pipeline.datasets.official import AnnotationError, dataset_root, fail_listing, read_lines
from pipeline.datasets.tables import DatasetTables

IMAGE_CAPTIONS = "image_captions.parquet"  # per-image captions for the caption-equality hit rule


def build(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """Seeded train pairs, the test queries (+ val sample), test gallery and image captions."""
    root = dataset_root(params)
    train = read_labels(root, "train")
    entries = gallery_entries(read_label_lines(root, "test"))
    test = {image_id: caption for image_id, _, caption in entries}
    last_entry = {path: image_id for image_id, path, _ in entries}  # later lines win
    triplets = train_triplets(train, random.Random(seed), params.train_pairs_per_image)
    test_rows = query_triplets(root, test, last_entry)
    triplets += test_rows + [{**row, "split": "val"} for row in test_rows]
    paths = {**{i: i for i in train}, **{i: path for i, path, _ in entries}}
    images = [{"image_id": i, "path": str(root / path)} for i, path in paths.items()]
    gallery = [{"split": s, "image_id": i} for s in ("val", "test") for i in test]
    ids = sorted(test)
    write_table(pa.table({"image_id": ids, "caption": [test[i] for i in ids]}, schema=CAPTIONS),
                Path(out_dir) / IMAGE_CAPTIONS, CAPTIONS)
    return DatasetTables.from_rows(triplets, images, gallery)


def caption_post_process(caption: str) -> str:
    """The official caption rewrite: stripped, '.', '?', '&', '*' spelled out as words."""
    return (caption.strip().replace(".", "dotmark").replace("?", "questionmark")
            .replace("&", "andmark").replace("*", "starmark"))


def read_labels(root: Path, split: str) -> dict[str, str]:
    """file path -> caption over the split's label files (sorted; first occurrence kept)."""
    captions: dict[str, str] = {}
    for path, caption in read_label_lines(root, split):
        captions.setdefault(path, caption)
    return captions


def read_label_lines(root: Path, split: str) -> list[tuple[str, str]]:
    """(file path, rewritten caption) per line of the split's label files, sorted by file."""
    folder = root / "labels"
    files = sorted(folder.glob(f"*_{split}_detect_all.txt")) if folder.is_dir() else []
    if not files:
        raise AnnotationError(f"{folder}: no *_{split}_detect_all.txt label files; "
                              "check prepare.root")
    entries: list[tuple[str, str]] = []
    for path in files:
        bad = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 3 or not fields[0].strip() or not fields[2].strip():
                bad.append(f"line {n}")
                continue
            entries.append((fields[0].strip(), caption_post_process(fields[2])))
        fail_listing(path, "lines that are not 'path<TAB>score<TAB>caption'", bad,
                     "Restore the official label file")
    return entries


def gallery_entries(lines: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(gallery id, file path, caption) per label line: a path's n-th line is `<path>#<n>`."""
    seen: dict[str, int] = {}
    entries = []
    for path, caption in lines:
        seen[path] = seen.get(path, 0) + 1
        entries.append((path if seen[path] == 1 else f"{path}#{seen[path]}", path, caption))
    return entries


def different_words(source: str, target: str) -> tuple[str, str]:
    """TIRG's (X, Y): first source word not in the target, first target word not in the source
    (each falls back to the caption's last word, as the official loop does)."""
    source_words, target_words = source.split(), target.split()
    x = next((w for w in source_words if w not in target_words), source_words[-1])
    y = next((w for w in target_words if w not in source_words), target_words[-1])
    return x, y


def _triplet(split: str, pair_id: str, ref: str, target: str, captions: dict) -> dict:
    x, y = different_words(captions[ref], captions[target])
    return {
        "split": split, "pair_id": pair_id, "reference_id": ref, "target_id": target,
        "modification": f"replace {x} with {y}", "caption": captions[ref], "keywords": [y],
        "subset": None,
    }


def query_triplets(root: Path, test: dict[str, str], last_entry: dict[str, str]) -> list[dict]:
    """One query per line of test_queries.txt (pair id = zero-padded line index), between the
    gallery entries of each file's last label line."""
    path = root / "test_queries.txt"
    lines = read_lines(path, "Fashion200K test queries")
    malformed = [f"line {n}" for n, line in enumerate(lines, 1) if len(line.split()) != 2]
    fail_listing(path, "lines that are not 'source target'", malformed, "Restore the file")
    unknown = [f"line {n} ({f})" for n, line in enumerate(lines, 1) for f in line.split()
               if f not in last_entry]
    fail_listing(path, "images missing from the test label files", unknown,
                 "Check labels/*_test_detect_all.txt")
    return [_triplet("test", f"{n:05d}", *(last_entry[f] for f in line.split()), test)
            for n, line in enumerate(lines)]


def train_triplets(train: dict[str, str], rng: random.Random, per_image: int = 1) -> list[dict]:
    """Up to `per_image` distinct targets per modifiable image, each a sibling caption's image
    under a shared parent; a source's triplets are consecutive and share its reference_id."""
    images_of: dict[str, list[str]] = {}
    for image, caption in train.items():
        images_of.setdefault(caption, []).append(image)
    children: dict[str, list[str]] = {}
    for caption in images_of:
        for word in caption.split():
            # TIRG's parent: the caption with that word removed (every occurrence, as
            # str.replace does), double spaces collapsed once.
            parent = caption.replace(word, "").replace("  ", " ").strip()
            siblings = children.setdefault(parent, [])
            if caption not in siblings:
                siblings.append(caption)
    parents_of: dict[str, list[str]] = {}
    for parent, siblings in children.items():
        if len(siblings) >= 2:
            for caption in siblings:
                parents_of.setdefault(caption, []).append(parent)
    rows = []
    for image, caption in train.items():
        if caption not in parents_of:
            continue
        for target in _draw_targets(caption, parents_of[caption], children, images_of, rng,
                                    per_image):
            rows.append(_triplet("train", f"{len(rows):06d}", image, target, train))
    return rows


def _draw_targets(caption: str, parents: list[str], children: dict[str, list[str]],
                  images_of: dict[str, list[str]], rng: random.Random, count: int) -> list[str]:
    """Up to `count` distinct targets, each drawn as TIRG does (parent, sibling caption, image)
    among the ones not drawn yet; the first draw is exactly TIRG's single draw."""
    drawn: list[str] = []

    def open_caption(other: str) -> bool:  # a sibling with an image not drawn yet
        return other != caption and any(i not in drawn for i in images_of[other])

    while len(drawn) < count:
        # Nothing is filtered before the first draw, so with count 1 these are exactly the
        # rng calls of TIRG's single draw; later draws skip drawn targets instead of retrying,
        # so they always end. any() stops at the first open sibling: the filters stay cheap.
        open_parents = [p for p in parents if any(map(open_caption, children[p]))]
        if not open_parents:
            break
        other = rng.choice([c for c in children[rng.choice(open_parents)] if open_caption(c)])
        drawn.append(rng.choice([i for i in images_of[other] if i not in drawn]))
    return drawn
