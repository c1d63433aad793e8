"""CIRR adapter (rc2): train, val and test1 (test1 has no public targets).

Official layout under prepare.root:
  captions/cap.rc2.{train,val,test1}.json  [{"pairid", "reference", "target_hard", "caption",
                                             "img_set": {"members": [...]}}, ...]
  image_splits/split.rc2.{split}.json      {image name: "./train/34/....png"}
  the train/ dev/ test1/ folders, directly under root or under root/img_raw (or root/images)
DQU-CIR extras (root or prepare.provided_dir): image_captions_cirr_{split}.json (keyed by
image name), keywords_in_mods_cirr_{split}.json (keyed "{reference}+{target}", test1
"{pairid}+{reference}"). Galleries: every image of the val / test1 split file.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.params import PrepareParams
from pipeline.datasets.official import (
    ProvidedExtras,
    dataset_root,
    expect,
    fail_listing,
    find_file,
    read_json,
    record_fields,
    search_dirs,
)
from pipeline.datasets.tables import DatasetTables

SPLITS = ("train", "val", "test1")
NO_TARGETS = ("test1",)  # split whose targets are hidden (scored by the CIRR server)
IMAGE_BASES = (".", "img_raw", "images")  # where the split files' relative paths start


def build(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """All three splits' triplets (test1 with null targets), images and val/test1 galleries."""
    del seed, out_dir
    root = dataset_root(params)
    dirs = search_dirs(params, root, "captions")
    triplets: list[dict] = []
    images: dict[str, Path] = {}
    gallery: list[dict] = []
    for split in SPLITS:
        split_images = _split_images(root, split)
        images.update(split_images)
        if split != "train":
            gallery += [{"split": split, "image_id": name} for name in split_images]
        triplets += _split_triplets(root, split, split_images, dirs)
    rows = [{"image_id": name, "path": str(path)} for name, path in images.items()]
    return DatasetTables.from_rows(triplets, rows, gallery)


def _split_images(root: Path, split: str) -> dict[str, Path]:
    path = root / "image_splits" / f"split.rc2.{split}.json"
    names = expect(read_json(path, "CIRR image split"), dict, path,
                   'an object {image name: "./split/.../name.png"}')
    fail_listing(path, "entries whose path is not a string",
                 [k for k, v in names.items() if not isinstance(v, str)], "Restore the file")
    base = _image_base(root, list(names.values()))
    return {name: base / Path(rel) for name, rel in names.items()}


def _image_base(root: Path, relative: list[str]) -> Path:
    """The folder the relative image paths start from: the first base holding the first image."""
    for sub in IMAGE_BASES:
        if relative and (root / sub / relative[0]).is_file():
            return root / sub
    return root


def _split_triplets(root: Path, split: str, split_images: dict[str, Path],
                    dirs: list[Path]) -> list[dict]:
    path = root / "captions" / f"cap.rc2.{split}.json"
    fields = ("pairid", "reference", "caption", "img_set")
    if split not in NO_TARGETS:
        fields += ("target_hard",)
    entries = record_fields(
        expect(read_json(path, "CIRR captions"), list, path, f"a list of objects with {fields}"),
        path, fields,
    )
    bad = [f"pairid {e['pairid']}" for e in entries
           if not isinstance(e["img_set"], dict)
           or not isinstance(e["img_set"].get("members"), list)]
    fail_listing(path, "entries without img_set.members", bad, "Restore the official file")
    outside = [f"pairid {e['pairid']} ({m})" for e in entries for m in e["img_set"]["members"]
               if m not in split_images]
    fail_listing(path, f"subset members missing from split.rc2.{split}.json", outside,
                 "Restore the official image split file")
    extras = ProvidedExtras(find_file(f"image_captions_cirr_{split}.json", dirs),
                            find_file(f"keywords_in_mods_cirr_{split}.json", dirs))
    rows = []
    for e in entries:
        ref, target = e["reference"], e.get("target_hard")
        key = f"{e['pairid']}+{ref}" if split in NO_TARGETS else f"{ref}+{target}"
        rows.append({
            "split": split, "pair_id": str(e["pairid"]), "reference_id": ref,
            "target_id": None if split in NO_TARGETS else target,
            "modification": e["caption"], "caption": extras.caption(ref),
            "keywords": extras.keywords(key), "subset": [str(m) for m in e["img_set"]["members"]],
        })
    return rows
