"""prepare: the demo dataset and the checks every adapter's tables go through."""

from pathlib import Path

import pytest

from pipeline.core.params import DemoParams, Params, PrepareParams
from pipeline.core.report import BadRecordError, StageReport
from pipeline.core.shards import TRIPLETS, read_table
from pipeline.datasets import demo
from pipeline.datasets.tables import DatasetTables
from pipeline.stages import prepare


def _params(**demo_sizes: int) -> Params:
    sizes = {"train_pairs": 0, "val_pairs": 0, "test_pairs": 40, "image_size": 32}
    sizes.update(demo_sizes)
    return Params(prepare=PrepareParams(demo=DemoParams(**sizes)))


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepare")
    prepare.run(_params(), out)
    return out


def test_demo_tables_and_summary(demo_out):
    triplets = read_table(demo_out / "triplets.parquet", TRIPLETS).to_pylist()
    assert len(triplets) == 40
    gallery = read_table(demo_out / "gallery.parquet")["image_id"].to_pylist()
    assert len(gallery) == len(demo.ALL_THINGS) == 2880
    for row in triplets:
        assert row["reference_id"] != row["target_id"]
        assert row["target_id"] in set(gallery)
        assert row["modification"].strip() and row["caption"].strip()
    summary = (demo_out / "summary.json").read_text()
    assert '"gallery_images": 2880' in summary and '"queries": 40' in summary


def test_demo_language_matches_the_change():
    import random

    rng = random.Random(3)
    for _ in range(200):
        ref = rng.choice(demo.ALL_THINGS)
        new = ref.replace(colour="blue" if ref.colour != "blue" else "red")
        text = demo.modification_text(ref, new, ["colour"], rng)
        assert new.colour in text
        caption = demo.caption_of(ref, rng)
        assert ref.colour in caption and ref.shape in caption


def test_demo_is_deterministic(tmp_path, demo_out):
    prepare.run(_params(), tmp_path)
    for name in ("triplets.parquet", "gallery.parquet"):
        assert (tmp_path / name).read_bytes() == (demo_out / name).read_bytes()
    # Image paths live under each run's own output folder; the rest must match.
    ours = read_table(tmp_path / "images.parquet")["path"].to_pylist()
    theirs = read_table(demo_out / "images.parquet")["path"].to_pylist()
    assert [Path(p).relative_to(tmp_path) for p in ours] == [
        Path(p).relative_to(demo_out) for p in theirs
    ]
    png = "images/test/test-00007.png"
    assert (tmp_path / png).read_bytes() == (demo_out / png).read_bytes()


def _tables(tmp_path: Path, triplets: list[dict]) -> DatasetTables:
    (tmp_path / "a.png").write_bytes(b"x")
    images = [
        {"image_id": "a", "path": str(tmp_path / "a.png")},
        {"image_id": "b", "path": str(tmp_path / "b.png")},  # file missing
        {"image_id": "c", "path": str(tmp_path / "a.png")},
    ]
    gallery = [{"split": "test", "image_id": "a"}, {"split": "test", "image_id": "b"}]
    base = {"split": "test", "caption": None, "keywords": None, "subset": None}
    return DatasetTables.from_rows([{**base, **t} for t in triplets], images, gallery)


BAD_ROWS = [
    (
        {"pair_id": "dup", "reference_id": "a", "target_id": "a", "modification": "x"},
        "duplicate pair id",
    ),
    (
        {"pair_id": "e", "reference_id": "a", "target_id": "a", "modification": "  "},
        "empty modification",
    ),
    (
        {"pair_id": "u", "reference_id": "zz", "target_id": "a", "modification": "x"},
        "'zz' is not in the image list",
    ),
    ({"pair_id": "m", "reference_id": "b", "target_id": "a", "modification": "x"}, "is missing"),
    (
        {"pair_id": "g", "reference_id": "a", "target_id": "c", "modification": "x"},
        "not in the test gallery",
    ),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ROWS)
def test_bad_triplet_fails_naming_the_record(tmp_path, row, reason):
    rows = [row, row] if row["pair_id"] == "dup" else [row]
    with pytest.raises(BadRecordError) as info:
        prepare.check_tables(_tables(tmp_path, rows), StageReport("prepare"))
    assert f"test/{row['pair_id']}" in str(info.value) and reason in str(info.value)
    assert "on_bad_record: skip" in str(info.value)


def test_bad_triplets_are_counted_when_skipping(tmp_path):
    good = {"pair_id": "ok", "reference_id": "a", "target_id": "a", "modification": "bluer"}
    rows = [good] + [r for r, _ in BAD_ROWS] + [BAD_ROWS[0][0]]
    report = StageReport("prepare", "skip")
    tables = prepare.check_tables(_tables(tmp_path, rows), report)
    assert tables.triplets["pair_id"].to_pylist() == ["ok"]
    assert (report.n_in, report.n_out, report.n_skipped) == (7, 1, 6)
    assert report.as_dict()["n_in"] == 7


def test_fail_lists_every_bad_triplet_at_once(tmp_path):
    rows = [r for r, _ in BAD_ROWS[1:]]
    with pytest.raises(BadRecordError) as info:
        prepare.check_tables(_tables(tmp_path, rows), StageReport("prepare"))
    message = str(info.value)
    assert "4 bad record(s)" in message
    for row, reason in BAD_ROWS[1:]:
        assert f"test/{row['pair_id']}: " in message and reason in message
