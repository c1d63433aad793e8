"""Progress of long loops: a bar with items/s and ETA on a terminal, a periodic line in logs.

One helper for every stage, so DVC logs (not a terminal) get a readable update every
`DQU_PROGRESS_INTERVAL` seconds (default 10) instead of a stream of carriage returns, and a
terminal gets a tqdm bar. `DQU_PROGRESS` = auto (default) | bar | log | off forces a mode.
Progress goes to stderr and never into any output file, so it cannot change what a stage writes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")

MODES = ("auto", "bar", "log", "off")
_DEFAULT_INTERVAL_S = 10.0


def _mode_from_env() -> str:
    """The progress mode asked for by DQU_PROGRESS, checked."""
    mode = os.environ.get("DQU_PROGRESS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"DQU_PROGRESS={mode!r} is not a progress mode; use one of {MODES}")
    return mode


def _interval_from_env() -> float:
    """Seconds between log lines, from DQU_PROGRESS_INTERVAL (default 10)."""
    raw = os.environ.get("DQU_PROGRESS_INTERVAL", "")
    if not raw:
        return _DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ValueError(f"DQU_PROGRESS_INTERVAL={raw!r} must be a positive number of seconds")
    return value


def _duration(seconds: float) -> str:
    """A short human duration: 42 s, 3 min 05 s, 1 h 02 min."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Counts finished items of one step and reports them as a bar or as periodic log lines."""

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "items",
        *,
        enabled: bool = True,
        stream: IO[str] | None = None,
        mode: str | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._interval = _interval_from_env() if interval_s is None else interval_s
        chosen = _mode_from_env() if mode is None else mode
        if chosen == "auto":
            isatty = getattr(self._stream, "isatty", None)
            chosen = "bar" if isatty is not None and isatty() else "log"
        self.mode = chosen if enabled else "off"
        self._start = self._last_line = clock()
        self._bar = None
        self._closed = False
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self._stream,
                             mininterval=0.5, dynamic_ncols=True, leave=True)

    def update(self, n: int = 1) -> None:
        """Records `n` more finished items; prints a log line when the interval has passed."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "log":
            now = self._clock()
            if now - self._last_line >= self._interval:
                self._last_line = now
                self._write(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The one-line status: done/total, percent, rate and ETA (or elapsed when finished)."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        head = f"{self.desc}: {count} {self.unit}"
        if self.total:
            head += f" ({100.0 * self.done / self.total:.0f}%)"
        parts = [head, f"{rate:.1f} {self.unit}/s"]
        if self._closed:
            parts.append(f"in {_duration(elapsed)}")
        elif self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        return ", ".join(parts)

    def close(self) -> None:
        """Ends the step: closes the bar, or prints a final log line with the overall rate."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log" and self.done:
            self._write(self.line())

    def _write(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    items: Iterable[T], desc: str, total: int | None = None, unit: str = "items",
    *, enabled: bool = True,
) -> Iterator[T]:
    """Yields `items` unchanged while reporting progress, one update per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(desc, total, unit, enabled=enabled) as progress:
        for item in items:
            yield item
            progress.update(1)
