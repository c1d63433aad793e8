"""Shoes adapter: triplets whose reference is an eval image are the queries (split `val`).

Official layout under prepare.root:
  relative_captions_shoes.json  [{"ImageName", "ReferenceImageName", "RelativeCaption"}, ...]
  train_im_names.txt, eval_im_names.txt   one image file name per line
  womens_*/<n>/<name>.jpg                 the images, found by file name
DQU-CIR extras (root or prepare.provided_dir): correction_dict_shoes.json,
image_captions_shoes.json (keyed by image name), keywords_in_mods_shoes.json (keyed
"{reference}+{target}", which is also our pair id). Gallery = the eval images.
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
    load_corrections,
    read_json,
    read_lines,
    record_fields,
    search_dirs,
)
from pipeline.datasets.tables import DatasetTables
from pipeline.datasets.text_norm import normalize_caption

FIELDS = ("ImageName", "ReferenceImageName", "RelativeCaption")


def build(params: PrepareParams, seed: int, out_dir: Path) -> DatasetTables:
    """Train triplets (reference in train_im_names), val queries and the eval-image gallery."""
    del seed, out_dir
    root = dataset_root(params)
    dirs = search_dirs(params, root)
    corrections = load_corrections(params, dirs, "correction_dict_shoes.json")
    extras = ProvidedExtras(find_file("image_captions_shoes.json", dirs),
                            find_file("keywords_in_mods_shoes.json", dirs))
    files = index_images(root)
    train_names = set(read_lines(root / "train_im_names.txt", "Shoes train image list"))
    eval_names = list(dict.fromkeys(read_lines(root / "eval_im_names.txt",
                                               "Shoes eval image list")))
    eval_set = set(eval_names)
    path = root / "relative_captions_shoes.json"
    entries = record_fields(
        expect(read_json(path, "Shoes relative captions"), list, path,
               f"a list of objects with {list(FIELDS)}"),
        path, FIELDS,
    )
    triplets, used, unused = [], [], 0
    for entry in entries:
        ref, target = entry["ReferenceImageName"], entry["ImageName"]
        # The official loader checks train first, so a name in both lists trains.
        split = "train" if ref in train_names else "val" if ref in eval_set else None
        if split is None:
            unused += 1
            continue
        key = f"{ref}+{target}"
        triplets.append({
            "split": split, "pair_id": key, "reference_id": ref, "target_id": target,
            "modification": normalize_caption(str(entry["RelativeCaption"]).strip(), corrections),
            "caption": extras.caption(ref), "keywords": extras.keywords(key), "subset": None,
        })
        used += [ref, target]
    if unused:
        print(f"[prepare] shoes: {unused} triplet(s) whose reference is in neither image list "
              "are not used (as in the official loader)")
    fail_listing(root, "eval images with no file under womens_*",
                 [n for n in eval_names if n not in files], "Restore the images")
    ids = list(dict.fromkeys(used + eval_names))
    images = [{"image_id": i, "path": str(files.get(i, root / i))} for i in ids]
    gallery = [{"split": "val", "image_id": i} for i in eval_names]
    return DatasetTables.from_rows(triplets, images, gallery)


def index_images(root: Path) -> dict[str, Path]:
    """File name -> path of every .jpg under the womens_* folders; error on repeated names."""
    found: dict[str, Path] = {}
    repeated: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and "womens" in p.name):
        for path in sorted(folder.rglob("*.jpg")):
            if path.name in found:
                repeated.append(f"{path.name} ({found[path.name]} and {path})")
            found.setdefault(path.name, path)
    fail_listing(root, "image names found twice under womens_*", repeated,
                 "Keep one copy of each image")
    return found
