"""Per-epoch DVCLive logging that never touches dvc.yaml, git or DVC experiments."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class EpochLogger:
    """One DVCLive step per epoch under `directory` (metrics.json + plots/metrics/*.tsv)."""

    def __init__(self, directory: Path) -> None:
        # Imported here: dvclive pulls in dvc, which GPU machines running only the trainer lack.
        from dvclive import Live

        self._live = Live(dir=str(directory), resume=False, report=None, save_dvc_exp=False,
                          dvcyaml=None, monitor_system=False)

    def log(self, record: dict[str, float]) -> None:
        """Log one epoch's numbers (the "epoch" key itself is DVCLive's step) and advance."""
        for name, value in record.items():
            if name != "epoch":
                self._live.log_metric(name, float(value))
        self._live.next_step()

    def replay(self, records: Iterable[dict[str, float]]) -> None:
        """Re-log earlier epochs so a resumed run's logs equal an uninterrupted run's."""
        for record in records:
            self.log(record)

    def close(self) -> None:
        """Write the summary and release DVCLive."""
        self._live.end()
