"""Dataset-shaped replicas at real sizes: the official file layouts, placeholder images.

`python -m devkit.replicas shoes|cirr|fashion200k OUT [--scale 2]` writes a folder the real
adapters (pipeline/datasets/shoes.py, cirr.py, fashion200k.py) read as they would the dataset,
with the official DQU-CIR
extras (captions, keywords, an empty typo dictionary) so `caption` and `keywords` run their
`provided` backends and no heavy model is needed. Images are tiny solid-colour files by default,
so what a run measures is the pipeline's own cost per record at the dataset's real counts
(bench/scale.py); `ImageStyle(textured=True, side=N)` writes photo-like images instead, whose
files and decoding cost what real ones do.

Sizes at scale 1 (the datasets' own counts): Shoes 10,751 triplets over 14,658 images (10,000
train + 4,658 eval); CIRR rc2 36,554 triplets over 21,552 images (train 28,225 / 16,939,
val 4,181 / 2,297, test1 4,148 / 2,316); Fashion200K 172,049 train and 29,789 test images over
five categories, 33,480 test queries (TIRG's split; its training pairs are drawn by prepare,
prepare.train_pairs_per_image per source). Seeded: the same arguments write the same files.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SHOES = {"train_images": 10_000, "eval_images": 4_658, "triplets": 10_751, "train_share": 0.836}
CIRR = {"train": (28_225, 16_939), "val": (4_181, 2_297), "test1": (4_148, 2_316)}
FASHION200K = {"train_images": 172_049, "test_images": 29_789, "test_queries": 33_480}
# Fashion200K captions are attribute words then the garment ("blue knit midi dress"): four
# slots here, so a caption has siblings one word away (TIRG's parents) and pools fill up.
F200K_WORDS = (
    ("blue", "red", "black", "white", "green", "grey", "pink", "beige", "navy", "yellow",
     "purple", "brown"),
    ("striped", "floral", "plain", "printed", "dotted", "checked", "embroidered", "lace",
     "pleated", "ruffled"),
    ("cotton", "silk", "denim", "leather", "wool", "knit", "linen", "satin", "velvet",
     "chiffon"),
)
F200K_CATEGORIES = {"dress": "dresses", "jacket": "jackets", "pants": "pants",
                    "skirt": "skirts", "top": "tops"}
SUBSET = 6  # CIRR img_set members per query
IMAGE_SIDE = 16  # placeholder side, pixels
COLOURS = ("red", "blue", "green", "black", "white", "brown", "pink", "grey")
THINGS = ("laces", "heel", "strap", "buckle", "sole", "toe", "stripes", "logo")
PHRASES = ("is {c} with a {t}", "has a {c} {t} instead", "{c} and shows a {t}",
           "make it {c} with no {t}")


def _modification(rng: np.random.Generator) -> tuple[str, list[str]]:
    """A modification text and its provided keywords (the colour and the thing)."""
    colour, thing = COLOURS[rng.integers(len(COLOURS))], THINGS[rng.integers(len(THINGS))]
    text = PHRASES[rng.integers(len(PHRASES))].format(c=colour, t=thing)
    return text, [colour, thing]


@dataclass(frozen=True)
class ImageStyle:
    """What the replica's images look like: solid placeholders, or photo-like at a real size.

    A solid image compresses to a few hundred bytes and decodes for free, so a replica made of
    them measures the pipeline's per-record work only; `textured` images (a smooth colour field
    plus grain at `side` pixels) keep JPEG / PNG near the sizes of real photos, so decoding,
    resizing and the bytes each stage writes are what a user meets.
    """

    textured: bool = False
    side: int = IMAGE_SIDE


SOLID = ImageStyle()  # the default: solid placeholders of IMAGE_SIDE pixels

def _write_image(path: Path, rng: np.random.Generator, fmt: str,
                 style: ImageStyle = SOLID) -> None:
    """One replica image: a solid-colour placeholder, or a textured one (see ImageStyle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not style.textured:
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        Image.new("RGB", (style.side, style.side), colour).save(path, fmt)
        return
    side = style.side
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    start, end = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    field_ = start + (end - start) * ((ramp[:, None] + ramp[None, :]) / 2)[..., None]
    grain = rng.normal(0.0, 24.0, (side, side, 3)).astype(np.float32)
    pixels = np.clip(field_ + grain, 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _keyword_entry(text: str, keywords: list[str]) -> list[str]:
    """An official keywords_in_mods_* value: the keywords are its last element, ", "-joined."""
    return [text, ", ".join(keywords)]


def write_shoes(root: Path, scale: float = 1.0, seed: int = 0,
                style: ImageStyle = SOLID) -> dict[str, int]:
    """Write a Shoes replica under root; return its counts."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    n_train, n_eval = (round(SHOES[k] * scale) for k in ("train_images", "eval_images"))
    names = [f"img_womens_{i:07d}.jpg" for i in range(n_train + n_eval)]
    for i, name in enumerate(names):
        _write_image(root / "womens_shoes" / str(i // 1000) / name, rng, "JPEG", style)
    train, evaluation = names[:n_train], names[n_train:]
    (root / "train_im_names.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (root / "eval_im_names.txt").write_text("\n".join(evaluation) + "\n", encoding="utf-8")
    n_triplets = round(SHOES["triplets"] * scale)
    n_train_triplets = round(n_triplets * SHOES["train_share"])
    entries, captions, keywords = [], {}, {}
    for k in range(n_triplets):
        pool = train if k < n_train_triplets else evaluation
        ref, target = (pool[j] for j in rng.choice(len(pool), 2, replace=False))
        while f"{ref}+{target}" in keywords:  # the pair is the id: each drawn once
            ref, target = (pool[j] for j in rng.choice(len(pool), 2, replace=False))
        text, words = _modification(rng)
        entries.append({"ImageName": target, "ReferenceImageName": ref, "RelativeCaption": text})
        captions[ref] = f"a {COLOURS[k % len(COLOURS)]} shoe"
        keywords[f"{ref}+{target}"] = _keyword_entry(text, words)
    _write_json(root / "relative_captions_shoes.json", entries)
    _write_json(root / "image_captions_shoes.json", captions)
    _write_json(root / "keywords_in_mods_shoes.json", keywords)
    _write_json(root / "correction_dict_shoes.json", {})
    return {"triplets": n_triplets, "images": len(names)}


def write_cirr(root: Path, scale: float = 1.0, seed: int = 0,
               style: ImageStyle = SOLID) -> dict[str, int]:
    """Write a CIRR rc2 replica under root (images under root/<split>/<n>/); return counts."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    totals = {"triplets": 0, "images": 0}
    for split, (n_pairs, n_images) in CIRR.items():
        n_pairs, n_images = round(n_pairs * scale), round(n_images * scale)
        folder = "dev" if split == "val" else split
        names = [f"{split}-{i:06d}" for i in range(n_images)]
        relative = {name: f"./{folder}/{i // 1000}/{name}.png" for i, name in enumerate(names)}
        for rel in relative.values():
            _write_image(root / rel, rng, "PNG", style)
        _write_json(root / "image_splits" / f"split.rc2.{split}.json", relative)
        entries, captions, keywords = [], {}, {}
        for pair in range(n_pairs):
            start = int(rng.integers(0, n_images - SUBSET + 1))
            members = names[start:start + SUBSET]
            ref, target = members[0], members[1 + int(rng.integers(SUBSET - 1))]
            text, words = _modification(rng)
            entry = {"pairid": pair, "reference": ref, "caption": text,
                     "img_set": {"id": pair, "members": members}}
            key = f"{pair}+{ref}" if split == "test1" else f"{ref}+{target}"
            if split != "test1":
                entry["target_hard"] = target
            entries.append(entry)
            captions[ref] = f"a photo of {COLOURS[pair % len(COLOURS)]} things"
            keywords[key] = _keyword_entry(text, words)
        _write_json(root / "captions" / f"cap.rc2.{split}.json", entries)
        _write_json(root / "captions" / f"image_captions_cirr_{split}.json", captions)
        _write_json(root / "captions" / f"keywords_in_mods_cirr_{split}.json", keywords)
        totals["triplets"] += n_pairs
        totals["images"] += n_images
    return totals


def write_fashion200k(root: Path, scale: float = 1.0, seed: int = 0,
                      style: ImageStyle = SOLID) -> dict[str, int]:
    """Write a Fashion200K replica (labels/, test_queries.txt, women/<category>/...); counts."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    categories = list(F200K_CATEGORIES)
    lines: dict[tuple[str, str], list[str]] = {}
    test_by_caption: dict[str, list[str]] = {}
    test_images: list[tuple[str, str]] = []
    for split in ("train", "test"):
        for i in range(round(FASHION200K[f"{split}_images"] * scale)):
            category = categories[i % len(categories)]
            words = [slot[rng.integers(len(slot))] for slot in F200K_WORDS]
            caption = " ".join([*words, category])
            path = f"women/{F200K_CATEGORIES[category]}/{split}/{i // 1000}/{i:07d}_0.jpeg"
            _write_image(root / path, rng, "JPEG", style)
            lines.setdefault((category, split), []).append(f"{path}\t0.9\t{caption}")
            if split == "test":
                test_by_caption.setdefault(caption, []).append(path)
                test_images.append((path, caption))
    for (category, split), rows in lines.items():
        label = root / "labels" / f"{category}_{split}_detect_all.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(rows) + "\n", encoding="utf-8")
    queries, wanted = [], round(FASHION200K["test_queries"] * scale)
    for _ in range(1000 * max(wanted, 1)):
        if len(queries) == wanted:
            break
        # TIRG's test queries: a source and a target whose captions differ in one word
        source, caption = test_images[int(rng.integers(len(test_images)))]
        words = caption.split()
        slot = int(rng.integers(len(F200K_WORDS)))
        words[slot] = F200K_WORDS[slot][rng.integers(len(F200K_WORDS[slot]))]
        targets = test_by_caption.get(" ".join(words), [])
        if " ".join(words) != caption and targets:
            queries.append(f"{source} {targets[int(rng.integers(len(targets)))]}")
    if len(queries) < wanted:
        raise ValueError(f"fashion200k replica: scale {scale} has too few test images for "
                         f"{wanted} one-word-apart queries; use a larger scale")
    (root / "test_queries.txt").write_text("\n".join(queries) + "\n", encoding="utf-8")
    images = sum(len(rows) for rows in lines.values())
    return {"triplets": len(queries), "images": images,
            "train_images": sum(len(r) for (_, s), r in lines.items() if s == "train")}


WRITERS = {"shoes": write_shoes, "cirr": write_cirr, "fashion200k": write_fashion200k}


def main(argv: list[str] | None = None) -> None:
    """`python -m devkit.replicas DATASET OUT [--scale S] [--seed N]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(WRITERS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="multiple of the real counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = WRITERS[args.dataset](args.out, args.scale, args.seed)
    print(json.dumps({"dataset": args.dataset, "scale": args.scale, **counts}))


if __name__ == "__main__":
    main()
