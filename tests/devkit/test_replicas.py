"""devkit.replicas writes folders the real Shoes and CIRR adapters read, with provided extras."""

from __future__ import annotations

from devkit.replicas import write_cirr, write_shoes
from pipeline.core.params import PrepareParams
from pipeline.datasets import cirr, shoes


def test_shoes_replica_reads_through_the_adapter(tmp_path) -> None:
    counts = write_shoes(tmp_path, scale=0.003)
    tables = shoes.build(PrepareParams(dataset="shoes", root=str(tmp_path)), 0, tmp_path / "o")
    assert tables.triplets.num_rows == counts["triplets"] == round(10_751 * 0.003)
    assert tables.gallery.num_rows == round(4_658 * 0.003)
    rows = tables.triplets.to_pylist()
    assert {r["split"] for r in rows} == {"train", "val"}
    assert all(r["caption"] and r["keywords"] for r in rows)  # provided backends need no model


def test_cirr_replica_reads_through_the_adapter(tmp_path) -> None:
    counts = write_cirr(tmp_path, scale=0.003)
    tables = cirr.build(PrepareParams(dataset="cirr", root=str(tmp_path)), 0, tmp_path / "o")
    assert tables.triplets.num_rows == counts["triplets"]
    assert tables.images.num_rows == counts["images"]
    rows = tables.triplets.to_pylist()
    assert all(len(r["subset"]) == 6 and r["keywords"] for r in rows)
    assert all(r["target_id"] is None for r in rows if r["split"] == "test1")
