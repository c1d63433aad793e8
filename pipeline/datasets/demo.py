"""`demo`: a seeded synthetic composed-image-retrieval dataset that needs no download.

Every image shows one object with five attributes (colour, shape, size, pattern, position).
Each split's gallery holds one image of every attribute combination (2,880), drawn with its own
jitter. A query changes one or two attributes of a reference, phrased in many ways (imperatives,
"X instead of Y", negations, comparatives). Captions, like BLIP-2's, name the colour and shape but
only sometimes the size, pattern or position, so the text query alone cannot pin the target down;
the reference image alone does not know the change. Only the fused query has both.

The adapter also writes image_captions.parquet: a full description of every image (all five
attributes), the image-text pairs the `pretrain` stage teaches the demo's CLIP with.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from PIL import Image, ImageDraw

from pipeline.core.images import encode_png
from pipeline.core.params import DemoParams
from pipeline.core.shards import CAPTIONS, write_table
from pipeline.datasets.tables import DatasetTables
from trainer.util.atomic import write_bytes

COLOURS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 215, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
    "pink": (250, 130, 190),
    "black": (25, 25, 25),
}
SHAPES = ["circle", "square", "triangle", "diamond", "cross", "star"]
SIZES = ["small", "medium", "large"]
PATTERNS = ["plain", "striped", "dotted", "checkered"]
POSITIONS = ["top left", "top right", "center", "bottom left", "bottom right"]
ATTRIBUTES = ("colour", "shape", "size", "pattern", "position")
_VALUES = {
    "colour": list(COLOURS),
    "shape": SHAPES,
    "size": SIZES,
    "pattern": PATTERNS,
    "position": POSITIONS,
}
_BACKGROUND = (200, 200, 200)
IMAGE_CAPTIONS = "image_captions.parquet"  # full descriptions, read by the pretrain stage
_SPLIT_SALT = {"train": 11, "val": 23, "test": 37}


@dataclass(frozen=True)
class Thing:
    """The attribute values of one demo image."""

    colour: str
    shape: str
    size: str
    pattern: str
    position: str

    def replace(self, **changes: str) -> Thing:
        """A copy with some attributes changed."""
        values = {a: getattr(self, a) for a in ATTRIBUTES}
        values.update(changes)
        return Thing(**values)


ALL_THINGS = [Thing(*combo) for combo in itertools.product(*(_VALUES[a] for a in ATTRIBUTES))]
_INDEX = {thing: i for i, thing in enumerate(ALL_THINGS)}


def image_id(split: str, thing: Thing) -> str:
    """Stable image id of `thing` in `split`'s gallery."""
    return f"{split}-{_INDEX[thing]:05d}"


# ---------------------------------------------------------------------------- drawing


def _shape_mask(shape: str, centre: tuple[float, float], radius: float, size: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = centre
    r = radius
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=255)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=255)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=255)
    elif shape == "cross":
        w = r * 0.35
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=255)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=255)
    elif shape == "star":
        points = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + rad * math.cos(angle), cy + rad * math.sin(angle)))
        draw.polygon(points, fill=255)
    return mask


def _pattern_fill(pattern: str, colour: tuple[int, int, int], size: int) -> Image.Image:
    fill = Image.new("RGB", (size, size), colour)
    if pattern == "plain":
        return fill
    # A light contrasting ink so the pattern survives downscaling to the model's input size.
    ink = tuple(255 - (255 - c) // 4 for c in colour) if sum(colour) < 450 else (60, 60, 60)
    draw = ImageDraw.Draw(fill)
    step = max(6, size // 16)
    if pattern == "striped":
        for y in range(0, size, step):
            draw.rectangle([0, y, size, y + step // 2 - 1], fill=ink)
    elif pattern == "dotted":
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                draw.ellipse([x - step / 4, y - step / 4, x + step / 4, y + step / 4], fill=ink)
    elif pattern == "checkered":
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2 == 0:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=ink)
    return fill


def draw_thing(thing: Thing, size: int, rng: random.Random) -> Image.Image:
    """Draw `thing` on a plain background with a little jitter in place and shade."""
    radius = {"small": 0.11, "medium": 0.17, "large": 0.24}[thing.size] * size
    col, row = {
        "top left": (0.27, 0.27),
        "top right": (0.73, 0.27),
        "center": (0.5, 0.5),
        "bottom left": (0.27, 0.73),
        "bottom right": (0.73, 0.73),
    }[thing.position]
    jitter = 0.03 * size
    centre = (col * size + rng.uniform(-jitter, jitter), row * size + rng.uniform(-jitter, jitter))
    shade = tuple(max(0, min(255, c + rng.randint(-12, 12))) for c in COLOURS[thing.colour])
    canvas = Image.new("RGB", (size, size), _BACKGROUND)
    mask = _shape_mask(thing.shape, centre, radius, size)
    canvas.paste(_pattern_fill(thing.pattern, shade, size), (0, 0), mask)
    return canvas


# ---------------------------------------------------------------------------- language


def caption_of(thing: Thing, rng: random.Random) -> str:
    """A BLIP-2-like caption: colour and shape always, other attributes only sometimes."""
    words = []
    if rng.random() < 0.4:
        words.append(thing.size)
    words.append(thing.colour)
    if thing.pattern != "plain" and rng.random() < 0.3:
        words.append(thing.pattern)
    words.append(thing.shape)
    text = " ".join(words)
    opener = rng.choice(["a", "a picture of a", "an image of a", "a drawing of a"])
    text = f"{opener} {text}"
    if rng.random() < 0.25:
        text += f" in the {thing.position}"
    text += rng.choice(["", " on a gray background"])
    return text.replace(" a a", " an a").replace("a orange", "an orange")


def description_of(thing: Thing) -> str:
    """Every attribute in words, e.g. "a large red striped circle in the top left"."""
    pattern = "" if thing.pattern == "plain" else f"{thing.pattern} "
    return f"a {thing.size} {thing.colour} {pattern}{thing.shape} in the {thing.position}"


def _colour_phrase(old: Thing, new: Thing, rng: random.Random) -> str:
    templates = [
        "make it {new}",
        "change the color to {new}",
        "is {new} instead of {old}",
        "{new} rather than {old}",
        "not {old} but {new}",
        "should be {new}",
        "in {new}",
        "has a {new} color",
    ]
    return rng.choice(templates).format(new=new.colour, old=old.colour)


def _shape_phrase(old: Thing, new: Thing, rng: random.Random) -> str:
    templates = [
        "turn it into a {new}",
        "is a {new}",
        "a {new} instead of a {old}",
        "change the shape to a {new}",
        "not a {old} but a {new}",
        "should be shaped like a {new}",
    ]
    return rng.choice(templates).format(new=new.shape, old=old.shape)


def _size_phrase(old: Thing, new: Thing, rng: random.Random) -> str:
    steps = SIZES.index(new.size) - SIZES.index(old.size)
    if abs(steps) == 2:
        word = "much bigger" if steps > 0 else "much smaller"
        return rng.choice(["is {w}", "make it {w}", "{w}"]).format(w=word)
    comparative = rng.choice(["bigger", "larger"]) if steps > 0 else "smaller"
    templates = ["is {c}", "make it {c}", "{c}", "slightly {c}", "should be {n} sized"]
    return rng.choice(templates).format(c=comparative, n=new.size)


def _pattern_phrase(old: Thing, new: Thing, rng: random.Random) -> str:
    noun = {"striped": "stripes", "dotted": "dots", "checkered": "checks"}
    if new.pattern == "plain":
        return rng.choice(
            [
                "no {o}",
                "without the {o}",
                "remove the {o}",
                "plain with no pattern",
                "is plain",
            ]
        ).format(o=noun[old.pattern])
    templates = ["add {n}", "with {n}", "is {p}", "has a {p} pattern", "{p} instead"]
    if old.pattern != "plain":
        templates += ["{n} instead of {o}", "not {op} but {p}"]
    return rng.choice(templates).format(
        n=noun[new.pattern], p=new.pattern, o=noun.get(old.pattern, ""), op=old.pattern
    )


def _position_phrase(old: Thing, new: Thing, rng: random.Random) -> str:
    templates = [
        "move it to the {new}",
        "place it in the {new}",
        "positioned at the {new}",
        "in the {new} instead of the {old}",
        "shift it to the {new}",
    ]
    return rng.choice(templates).format(new=new.position, old=old.position)


_PHRASERS = {
    "colour": _colour_phrase,
    "shape": _shape_phrase,
    "size": _size_phrase,
    "pattern": _pattern_phrase,
    "position": _position_phrase,
}


def modification_text(old: Thing, new: Thing, changed: list[str], rng: random.Random) -> str:
    """Describe the change old -> new in one of several phrasings, like a crowd worker."""
    phrases = [_PHRASERS[a](old, new, rng) for a in changed]
    joiner = rng.choice([" and ", ", ", " and also "])
    text = joiner.join(phrases)
    if rng.random() < 0.15:
        text = rng.choice(["please ", "ok so ", "now "]) + text
    return text


def _changed_thing(ref: Thing, rng: random.Random) -> tuple[Thing, list[str]]:
    n_changes = 1 if rng.random() < 0.55 else 2
    changed = sorted(rng.sample(ATTRIBUTES, n_changes), key=ATTRIBUTES.index)
    new_values = {a: rng.choice([v for v in _VALUES[a] if v != getattr(ref, a)]) for a in changed}
    return ref.replace(**new_values), changed


# ---------------------------------------------------------------------------- tables


def build(params: DemoParams, seed: int, out_dir: Path) -> DatasetTables:
    """Generate the demo images under out_dir/images and return its tables (deterministic)."""
    splits = {"train": params.train_pairs, "val": params.val_pairs, "test": params.test_pairs}
    triplet_rows: list[dict] = []
    image_rows: list[dict] = []
    gallery_rows: list[dict] = []
    descriptions: dict[str, str] = {}
    for split, n_pairs in splits.items():
        if n_pairs <= 0:
            continue
        rng = random.Random(seed * 1000 + _SPLIT_SALT[split])
        captions = {}
        for thing in ALL_THINGS:
            iid = image_id(split, thing)
            path = out_dir / "images" / split / f"{iid}.png"
            _write_png_once(path, draw_thing(thing, params.image_size, rng))
            image_rows.append({"image_id": iid, "path": path.as_posix()})
            gallery_rows.append({"split": split, "image_id": iid})
            captions[iid] = caption_of(thing, rng)
            descriptions[iid] = description_of(thing)
        for k in range(n_pairs):
            ref = rng.choice(ALL_THINGS)
            target, changed = _changed_thing(ref, rng)
            ref_id = image_id(split, ref)
            triplet_rows.append(
                {
                    "split": split,
                    "pair_id": f"{split}-{k:05d}",
                    "reference_id": ref_id,
                    "target_id": image_id(split, target),
                    "modification": modification_text(ref, target, changed, rng),
                    "caption": captions[ref_id],
                    "keywords": None,
                    "subset": None,
                }
            )
    ids = sorted(descriptions)
    write_table(pa.table({"image_id": ids, "caption": [descriptions[i] for i in ids]},
                         schema=CAPTIONS), Path(out_dir) / IMAGE_CAPTIONS, CAPTIONS)
    return DatasetTables.from_rows(triplet_rows, image_rows, gallery_rows)


def _write_png_once(path: Path, image: Image.Image) -> None:
    """Write the PNG unless identical bytes are already there (keeps reruns cheap)."""
    data = encode_png(image)
    if path.is_file() and path.read_bytes() == data:
        return
    write_bytes(path, data)


def describe() -> dict[str, int]:
    """Sizes of the demo's attribute space, for the README and summary."""
    return {"gallery_per_split": len(ALL_THINGS), **{a: len(_VALUES[a]) for a in ATTRIBUTES}}
