"""Atomic writes: a writer killed mid-write leaves the old file or the new one, never a part."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.factories import REPO
from trainer.util import atomic

# Writes FILE with 32 MiB of one byte value, then of the next, until killed.
WRITER = """
import sys
from trainer.util.atomic import write_bytes
path, size = sys.argv[1], 32 * 2**20
value = 0
while True:
    value = (value + 1) % 256
    write_bytes(path, bytes([value]) * size)
    print(value, flush=True)
"""


def test_a_killed_writer_leaves_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for delay in (0.05, 0.13, 0.31, 0.47):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=env,
                                  stdout=subprocess.PIPE, text=True)
        writer.stdout.readline()  # one whole file is in place
        time.sleep(delay)  # then kill it somewhere inside a later write
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        data = target.read_bytes()
        assert len(data) == 32 * 2**20
        assert data.count(data[:1]) == len(data), "a file mixes two writes"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.bin"]
    assert all(name.startswith(".out.bin.") for name in leftovers)  # only killed temp files


def test_import_leaves_the_umask_alone_and_files_get_its_mode(tmp_path: Path,
                                                              monkeypatch) -> None:
    def refuse(*_: object) -> int:
        raise AssertionError("os.umask was called")

    monkeypatch.setattr(os, "umask", refuse)
    module = importlib.reload(atomic)
    module.write_text(tmp_path / "a.txt", "x")
    monkeypatch.undo()
    current = os.umask(0o022)
    os.umask(current)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~current


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.json"
    atomic.write_json(target, {"old": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_with(target, broken)
    assert target.read_text() == '{\n  "old": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
