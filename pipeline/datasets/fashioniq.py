"""FashionIQ adapter (one category per run) with the VAL-split and original-split galleries.

Official layout under prepare.root:
  captions/cap.{cat}.{train,val}.json        [{"candidate", "target", "captions": [c1, c2]}, ...]
  image_splits/split.{cat}.{train,val}.json  [image id, ...]
  images/{id}.png  (or DQU-CIR's resized_image/{cat}/{id}.jpg)
DQU-CIR extras (root/captions, root, or prepare.provided_dir): correction_dict_{cat}.json,
image_captions_{cat}_{split}.json (keyed by image id), keywords_in_mods_{cat}.json (keyed
"{candidate}_{target}", which is also our pair id).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.params import PrepareParams
from pipeline.datasets.official import (
    AnnotationError,
    ProvidedExtras,
    dataset_root,
    expect,
    fail_listing,
    find_file,
    load_corrections,
    read_json,
    record_fields,
    search_dirs,
)
from pipeline.datasets.tables import DatasetTables
from pipeline.datasets.text_norm import join_captions

CATEGORIES = ("dress", "shirt", "toptee")
PROTOCOLS = ("val-split", "original-split")
SPLITS = ("train", "val")
# Image file patterns tried in order ({cat}, {id}); the first that exists wins per image.
IMAGE_PATTERNS = (
    "images/{id}.png",
    "images/{id}.jpg",
    "resized_image/{cat}/{id}.jpg",
    "resized_image/{cat}/{id}.png",
    "images/{cat}/{id}.png",
    "images/{cat}/{id}.jpg",
)


def build(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """Triplets of train and val, the images they use and the val gallery of the protocol."""
    del seed, out_dir  # deterministic, and nothing is generated
    category, protocol = _category(params), _protocol(params)
    root = dataset_root(params)
    extras_dirs = search_dirs(params, root, "captions")
    corrections = load_corrections(params, extras_dirs, f"correction_dict_{category}.json")
    keywords_file = find_file(f"keywords_in_mods_{category}.json", extras_dirs)
    locate = ImageLocator(root, category)
    triplets: list[dict] = []
    used: list[str] = []
    for split in SPLITS:
        cap_path = root / "captions" / f"cap.{category}.{split}.json"
        entries = record_fields(
            expect(read_json(cap_path, "FashionIQ captions"), list, cap_path,
                   'a list of {"candidate", "target", "captions"}'),
            cap_path, ("candidate", "target", "captions"),
        )
        _check_captions(entries, cap_path)
        extras = ProvidedExtras(
            find_file(f"image_captions_{category}_{split}.json", extras_dirs), keywords_file
        )
        for entry in entries:
            ref, target = str(entry["candidate"]), str(entry["target"])
            key = f"{ref}_{target}"
            triplets.append({
                "split": split, "pair_id": key, "reference_id": ref, "target_id": target,
                "modification": join_captions(entry["captions"], corrections),
                "caption": extras.caption(ref), "keywords": extras.keywords(key), "subset": None,
            })
            used += [ref, target]
    gallery_ids = val_gallery(root, category, protocol, triplets)
    image_ids = list(dict.fromkeys(used + gallery_ids))
    images = [{"image_id": i, "path": str(locate(i))} for i in image_ids]
    gallery = [{"split": "val", "image_id": i} for i in gallery_ids]
    return DatasetTables.from_rows(triplets, images, gallery)


def val_gallery(root: Path, category: str, protocol: str, triplets: list[dict]) -> list[str]:
    """VAL-split: de-duplicated union of val references and targets (query order);
    original-split: every image of split.{cat}.val.json."""
    if protocol == "val-split":
        ids: list[str] = []
        for row in triplets:
            if row["split"] == "val":
                ids += [row["reference_id"], row["target_id"]]
        return list(dict.fromkeys(ids))
    path = root / "image_splits" / f"split.{category}.val.json"
    names = expect(read_json(path, "FashionIQ image split"), list, path, "a list of image ids")
    return list(dict.fromkeys(str(n) for n in names))


class ImageLocator:
    """Finds each image's file, trying the pattern that worked last first."""

    def __init__(self, root: Path, category: str) -> None:
        self.root, self.category = root, category
        self._patterns = list(IMAGE_PATTERNS)

    def __call__(self, image_id: str) -> Path:
        """The image's file; a missing one gets the first pattern's path (reported later)."""
        for k, pattern in enumerate(self._patterns):
            path = self.root / pattern.format(cat=self.category, id=image_id)
            if path.is_file():
                self._patterns.insert(0, self._patterns.pop(k))
                return path
        return self.root / IMAGE_PATTERNS[0].format(cat=self.category, id=image_id)


def _check_captions(entries: list[dict], path: Path) -> None:
    bad = [
        f"#{i} ({e['candidate']}->{e['target']})" for i, e in enumerate(entries)
        if not isinstance(e["captions"], list) or len(e["captions"]) != 2
        or not all(isinstance(c, str) for c in e["captions"])
    ]
    fail_listing(path, "entries whose 'captions' is not two strings", bad,
                 "Restore the official file")


def _category(params: PrepareParams) -> str:
    if params.category not in CATEGORIES:
        raise AnnotationError(
            f"prepare.category: FashionIQ needs one of {list(CATEGORIES)} (one model per "
            f"category), got {params.category!r}"
        )
    return params.category


def _protocol(params: PrepareParams) -> str:
    protocol = params.protocol or "val-split"
    if protocol not in PROTOCOLS:
        raise AnnotationError(
            f"prepare.protocol: FashionIQ galleries are {list(PROTOCOLS)}, got {protocol!r}"
        )
    return protocol
