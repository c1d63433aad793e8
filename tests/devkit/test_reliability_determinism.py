"""Two clean runs of every pre-train stage write identical bytes (so dvc.lock hashes agree)."""

from __future__ import annotations

import shutil

from devkit import faults


def test_each_pre_train_stage_is_byte_identical_across_clean_runs(tmp_path):
    faults.write_base_dataset(tmp_path / "base")
    with faults.registered_adapter():
        scratch = faults.Scratch(tmp_path / "base", tmp_path / "scratch")
        # parallel=sync here; test_render pins sync vs local dask workers giving equal bytes.
        params = scratch.params("fail")
        runs = []
        for _ in range(2):
            shutil.rmtree(scratch.root / "run", ignore_errors=True)
            scratch.run_stages(params)
            runs.append({s: faults.file_hashes(scratch.out("run", s)) for s in faults.PRE_TRAIN})
    for stage in faults.PRE_TRAIN:
        assert runs[0][stage], f"{stage} wrote nothing"
        assert runs[0][stage] == runs[1][stage], stage
    assert any(name.startswith("queries-") for name in runs[0]["inputs"])


def test_file_hashes_see_a_changed_byte(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x00\x01")
    before = faults.file_hashes(tmp_path)
    (tmp_path / "a.bin").write_bytes(b"\x00\x02")
    assert faults.file_hashes(tmp_path) != before
