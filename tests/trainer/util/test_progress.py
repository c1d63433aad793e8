"""trainer.util.progress: log lines at the interval, a bar on a terminal, nothing when off."""

import io

import pytest

from trainer.util.progress import Progress, track


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_mode_prints_one_line_per_interval_and_a_final_rate():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("keywords", total=100, unit="texts", stream=stream, mode="log",
                        interval_s=10.0, clock=clock)
    for _ in range(40):
        clock.now += 0.125  # 5 s in all: under the interval, no line yet
        progress.update()
    assert stream.getvalue() == ""
    clock.now += 5.0
    progress.update(10)  # 50 done after 10 s
    assert stream.getvalue() == "keywords: 50/100 texts (50%), 5.0 texts/s, ETA 10 s\n"
    clock.now += 10.0
    progress.update(50)
    progress.close()
    progress.close()  # a second close prints nothing more
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "keywords: 100/100 texts (100%), 5.0 texts/s, in 20 s"
    assert len(lines) == 3


def test_unknown_total_shows_count_and_rate_without_eta():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("index", unit="images", stream=stream, mode="log", interval_s=1.0,
                        clock=clock)
    clock.now = 2.0
    progress.update(30)
    assert stream.getvalue() == "index: 30 images, 15.0 images/s\n"


def test_auto_mode_draws_a_bar_on_a_terminal_and_logs_elsewhere(monkeypatch):
    monkeypatch.delenv("DQU_PROGRESS", raising=False)
    tty = TtyStream()
    with Progress("render", total=3, unit="shards", stream=tty) as bar:
        assert bar.mode == "bar"
        bar.update(3)
    assert "3/3" in tty.getvalue() and "shards/s" in tty.getvalue()
    assert Progress("render", total=3, stream=io.StringIO()).mode == "log"


def test_off_and_disabled_print_nothing(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setenv("DQU_PROGRESS", "off")
    with Progress("train", total=2, stream=stream, interval_s=0.0) as progress:
        progress.update(2)
    monkeypatch.delenv("DQU_PROGRESS")
    with Progress("train", total=2, stream=stream, mode="log", interval_s=0.0,
                  enabled=False) as progress:  # e.g. a non-zero torchrun rank
        progress.update(2)
    assert stream.getvalue() == ""


def test_bad_environment_values_are_refused_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("DQU_PROGRESS", "loud")
    with pytest.raises(ValueError, match="DQU_PROGRESS='loud'"):
        Progress("x")
    monkeypatch.setenv("DQU_PROGRESS", "log")
    monkeypatch.setenv("DQU_PROGRESS_INTERVAL", "-3")
    with pytest.raises(ValueError, match="DQU_PROGRESS_INTERVAL"):
        Progress("x")


def test_track_yields_every_item_unchanged(monkeypatch):
    monkeypatch.setenv("DQU_PROGRESS", "off")
    assert list(track([3, 1, 2], "sort")) == [3, 1, 2]
