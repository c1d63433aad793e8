"""Fashion200K adapter (TIRG protocol) on a tiny replica of the official layout."""

import random
from pathlib import Path

import pytest
from PIL import Image

from pipeline.core.params import Params, PrepareParams
from pipeline.core.report import BadRecordError
from pipeline.core.shards import CAPTIONS, read_table
from pipeline.datasets.fashion200k import _triplet, different_words, train_triplets
from pipeline.datasets.official import AnnotationError
from pipeline.stages import prepare

TRAIN = {"women/dresses/1/a.jpeg": "red midi dress", "women/dresses/2/b.jpeg": "blue midi dress",
         "women/skirts/3/c.jpeg": "green maxi skirt"}
TEST = {"women/dresses/4/d.jpeg": "black lace dress", "women/dresses/5/e.jpeg": "white lace dress",
        "women/dresses/6/f.jpeg": "white lace dress", "women/tops/7/g.jpeg": "white silk top"}


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "fashion200k"
    (root / "labels").mkdir(parents=True)
    for split, items in (("train", TRAIN), ("test", TEST)):
        lines = [f"{path}\t0.9\t{caption}" for path, caption in items.items()]
        (root / "labels" / f"dress_{split}_detect_all.txt").write_text("\n".join(lines) + "\n")
        for path in items:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(root / path)
    (root / "test_queries.txt").write_text(
        "women/dresses/4/d.jpeg women/dresses/5/e.jpeg\n"
        "women/dresses/5/e.jpeg women/tops/7/g.jpeg\n")
    return root


def _run(root: Path, out: Path, **kw):
    return prepare.run(Params(prepare=PrepareParams(dataset="fashion200k", root=str(root), **kw)),
                       out)


def test_different_words_follow_tirg():
    assert different_words("black lace dress", "white lace dress") == ("black", "white")
    assert different_words("white lace dress", "white silk top") == ("lace", "silk")
    # No differing word: the official loop leaves the last word.
    assert different_words("red dress", "red dress") == ("dress", "dress")


def test_queries_gallery_and_captions(root, tmp_path):
    out = tmp_path / "prep"
    _run(root, out)
    rows = read_table(out / "triplets.parquet").to_pylist()
    test = [r for r in rows if r["split"] == "test"]
    assert [(r["modification"], r["keywords"], r["caption"]) for r in test] == [
        ("replace black with white", ["white"], "black lace dress"),
        ("replace lace with silk", ["silk"], "white lace dress"),
    ]
    # Only the two midi dresses share a parent caption ("midi dress"): one pair each way.
    train = sorted((r["reference_id"][-6:], r["target_id"][-6:], r["modification"])
                   for r in rows if r["split"] == "train")
    assert train == [("a.jpeg", "b.jpeg", "replace red with blue"),
                     ("b.jpeg", "a.jpeg", "replace blue with red")]
    val = [r for r in rows if r["split"] == "val"]
    assert sorted(r["pair_id"] for r in val) == ["00000", "00001"]
    assert [r["pair_id"] for r in val] == [r["pair_id"] for r in test]  # val = the whole test set
    gallery = read_table(out / "gallery.parquet").to_pylist()
    assert sorted(g["image_id"] for g in gallery if g["split"] == "test") == sorted(TEST)
    captions = read_table(out / "image_captions.parquet", CAPTIONS).to_pylist()
    assert {c["image_id"]: c["caption"] for c in captions} == TEST


def test_bad_label_line_and_unknown_query_image(root, tmp_path):
    with open(root / "test_queries.txt", "a") as f:
        f.write("women/x.jpeg women/dresses/5/e.jpeg\n")
    with pytest.raises(AnnotationError, match=r"line 3 \(women/x\.jpeg\)"):
        _run(root, tmp_path / "a")
    label = root / "labels" / "dress_test_detect_all.txt"
    label.write_text(label.read_text() + "broken line without tabs\n")
    with pytest.raises(AnnotationError, match=r"dress_test_detect_all\.txt.*line 5"):
        _run(root, tmp_path / "b")


def test_missing_test_image_names_the_query(root, tmp_path):
    (root / "women/dresses/5/e.jpeg").unlink()
    with pytest.raises(BadRecordError, match="e.jpeg"):
        _run(root, tmp_path / "c")


def test_captions_are_rewritten_like_the_official_loader():
    from pipeline.datasets.fashion200k import caption_post_process

    assert caption_post_process("  black & white 3.1 dress?* \n") == (
        "black andmark white 3dotmark1 dressquestionmarkstarmark")


def test_every_test_label_line_is_a_gallery_entry(root, tmp_path):
    label = root / "labels" / "dress_test_detect_all.txt"
    # d.jpeg listed again with another caption: a second gallery entry, and queries use it.
    label.write_text(label.read_text() + "women/dresses/4/d.jpeg\t0.5\tblack v.neck dress\n")
    out = tmp_path / "prep"
    _run(root, out)
    gallery = read_table(out / "gallery.parquet").to_pylist()
    test_ids = [g["image_id"] for g in gallery if g["split"] == "test"]
    assert sorted(test_ids) == sorted([*TEST, "women/dresses/4/d.jpeg#2"])
    captions = {c["image_id"]: c["caption"]
                for c in read_table(out / "image_captions.parquet", CAPTIONS).to_pylist()}
    assert captions["women/dresses/4/d.jpeg"] == "black lace dress"
    assert captions["women/dresses/4/d.jpeg#2"] == "black vdotmarkneck dress"
    images = {i["image_id"]: i["path"] for i in read_table(out / "images.parquet").to_pylist()}
    assert images["women/dresses/4/d.jpeg#2"] == images["women/dresses/4/d.jpeg"]
    rows = read_table(out / "triplets.parquet").to_pylist()
    first = next(r for r in rows if r["split"] == "test" and r["pair_id"] == "00000")
    # The official file2imgid keeps a path's last line: its caption and its gallery entry.
    assert first["reference_id"] == "women/dresses/4/d.jpeg#2"
    assert (first["caption"], first["modification"]) == ("black vdotmarkneck dress",
                                                         "replace black with white")


MORE_TRAIN = {"women/dresses/8/h.jpeg": "red midi dress",
              "women/dresses/9/i.jpeg": "green midi dress",
              "women/dresses/10/j.jpeg": "red maxi dress"}


def test_a_pool_of_distinct_parent_targets_per_source(root, tmp_path):
    label = root / "labels" / "dress_train_detect_all.txt"
    label.write_text(label.read_text() + "".join(f"{p}\t0.9\t{c}\n" for p, c in MORE_TRAIN.items()))
    for path in MORE_TRAIN:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / path)
    out = tmp_path / "prep"
    _run(root, out, train_pairs_per_image=3)
    train = [r for r in read_table(out / "triplets.parquet").to_pylist() if r["split"] == "train"]
    assert len({r["pair_id"] for r in train}) == len(train)
    targets: dict[str, list[str]] = {}
    for r in train:
        targets.setdefault(r["reference_id"], []).append(r["target_id"][-6:])
    # a (red midi dress): blue / green midi under "midi dress", red maxi under "red dress";
    # h has a's own caption, so it is never a's target.
    assert sorted(targets["women/dresses/1/a.jpeg"]) == ["b.jpeg", "i.jpeg", "j.jpeg"]
    assert all(len(set(t)) == len(t) <= 3 for t in targets.values())
    assert sorted(targets["women/dresses/10/j.jpeg"]) == ["a.jpeg", "h.jpeg"]  # "red dress"
    assert "women/skirts/3/c.jpeg" not in targets  # no sibling caption: not modifiable


def _tirg_single_draw(train: dict[str, str], rng: random.Random) -> list[dict]:
    """The adapter's one-pair draw before train_pairs_per_image, kept to pin K = 1."""
    images_of: dict[str, list[str]] = {}
    for image, caption in train.items():
        images_of.setdefault(caption, []).append(image)
    children: dict[str, list[str]] = {}
    for caption in images_of:
        for word in caption.split():
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
        parent = rng.choice(parents_of[caption])
        other = rng.choice([c for c in children[parent] if c != caption])
        target = rng.choice(images_of[other])
        rows.append(_triplet("train", f"{len(rows):06d}", image, target, train))
    return rows


def test_one_pair_per_image_is_the_single_tirg_draw():
    words = random.Random(3)
    colours, kinds = ["red", "blue", "green", "black", "white"], ["midi", "maxi", "lace", "silk"]
    train = {f"img{n:04d}.jpeg": " ".join([words.choice(colours), words.choice(kinds), "dress"])
             for n in range(300)}
    for seed in (0, 7):
        expected = _tirg_single_draw(train, random.Random(seed))
        assert train_triplets(train, random.Random(seed)) == expected
        assert train_triplets(train, random.Random(seed), 1) == expected
    pool = train_triplets(train, random.Random(0), 4)
    assert len(pool) == 4 * len(expected)  # 300 images over 20 captions: always 4 open targets
    by_source: dict[str, list[str]] = {}
    for r in pool:
        by_source.setdefault(r["reference_id"], []).append(r["target_id"])
    assert all(len(set(t)) == 4 and train[r] not in {train[i] for i in t}
               for r, t in by_source.items())
    # a source's triplets are consecutive, pair ids unique
    assert [r["reference_id"] for r in pool] == [r for r in by_source for _ in range(4)]
    assert len({r["pair_id"] for r in pool}) == len(pool)
