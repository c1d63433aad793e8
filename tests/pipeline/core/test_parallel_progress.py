"""map_tasks reports progress as tasks finish, in task-size units, on every scheduler."""

from __future__ import annotations

import pytest

from pipeline.core.parallel import map_tasks
from pipeline.core.params import ParallelParams


@pytest.mark.parametrize("params", [ParallelParams(scheduler="sync"),
                                    ParallelParams(scheduler="local", workers=2)])
def test_every_finished_task_counts_its_size(params, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DQU_PROGRESS", "log")
    monkeypatch.setenv("DQU_PROGRESS_INTERVAL", "1e-9")  # a line at every update
    tasks = [-1, -2, -3, -4]
    assert map_tasks(abs, tasks, params, desc="render", sizes=[10, 20, 30, 40],
                     unit="triplets") == [1, 2, 3, 4]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("render")]
    assert lines[-1].startswith("render: 100/100 triplets (100%)")
    assert len(lines) == len(tasks) + 1  # one per finished task, then the closing line


def test_no_desc_prints_nothing(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DQU_PROGRESS", "log")
    monkeypatch.setenv("DQU_PROGRESS_INTERVAL", "1e-9")
    assert map_tasks(abs, [-1], ParallelParams(scheduler="sync")) == [1]
    assert capsys.readouterr().err == ""
