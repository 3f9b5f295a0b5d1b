"""Live progress in the terminal (rich), fed by the flows' `flows.progress.Progress`.

Drawn on stderr and only on a terminal: piped or CI output stays free of bars, and
stdout stays clean for `--json`.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TerminalProgress:
    """One bar per stage: done/total, rates of its counters (completions, tokens), ETA."""

    def __init__(self, console: Console) -> None:
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TextColumn("{task.fields[rates]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks: dict[int, tuple[TaskID, float]] = {}

    @classmethod
    def for_terminal(cls) -> TerminalProgress | None:
        console = Console(stderr=True)
        return cls(console) if console.is_terminal else None

    def start(self, key: int, description: str, total: int, unit: str) -> None:
        if not self._tasks:
            self._bars.start()
        self._tasks[key] = (self._bars.add_task(description, total=total, unit=unit, rates=""), time.monotonic())

    def update(self, key: int, done: int, counters: dict[str, int]) -> None:
        task_id, started = self._tasks[key]
        elapsed = max(time.monotonic() - started, 1e-6)
        rates = []
        if counters.get("completions"):
            rates.append(f"{counters['completions']} completions")
        if counters.get("tokens"):
            rates.append(f"{counters['tokens'] / elapsed:.1f} tok/s")
        self._bars.update(task_id, completed=done, rates=", ".join(rates))

    def finish(self, key: int) -> None:
        task_id, _ = self._tasks[key]
        self._bars.refresh()
        self._bars.stop_task(task_id)

    def stop(self) -> None:
        self._bars.stop()
