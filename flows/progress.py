"""A stage's progress: a Prefect progress artifact, and the live display the CLI draws
(rmforge.progress) when one is set."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from rmforge.generators.base import generation_progress


class ProgressDisplay(Protocol):
    """Where live progress goes (the CLI shows a terminal bar); flows never draw."""

    def start(self, key: int, description: str, total: int, unit: str) -> None: ...

    def update(self, key: int, done: int, counters: dict[str, int]) -> None: ...

    def finish(self, key: int) -> None: ...


_display: ProgressDisplay | None = None


def set_progress_display(display: ProgressDisplay | None) -> None:
    global _display
    _display = display


class Progress:
    """One stage's progress: a Prefect progress artifact plus the live display, if any.

    `advance` counts finished items (rollouts) and named counters (completions, tokens);
    `track_generation` feeds it from the LLM backends while a batch runs, so a long
    batch still shows movement.
    """

    _next_key = 0

    def __init__(self, description: str, total: int, unit: str = "rollouts") -> None:
        self.total, self.done = total, 0
        self.counters: dict[str, int] = {}
        self._lock = threading.Lock()
        Progress._next_key += 1
        self.key = Progress._next_key
        # Outside a flow run (plain function calls in tests) there is no artifact to attach to.
        artifact_id = create_progress_artifact(progress=0.0, description=description) if flow_run.id else None
        # Called outside an event loop, Prefect's dispatcher runs the sync version: an id, not a coroutine.
        assert artifact_id is None or isinstance(artifact_id, UUID)
        self.artifact_id = artifact_id
        if _display is not None:
            _display.start(self.key, description, total, unit)

    def advance(self, items: int = 0, **counters: int | None) -> None:
        with self._lock:
            self.done = min(self.total, self.done + items)
            for name, value in counters.items():
                if value:
                    self.counters[name] = self.counters.get(name, 0) + value
            if _display is not None:
                _display.update(self.key, self.done, dict(self.counters))

    def finish_batch(self, done: int) -> None:
        """Items done so far, exactly (batches may skip items that were already done)."""
        with self._lock:
            self.done = min(self.total, done)
            if _display is not None:
                _display.update(self.key, self.done, dict(self.counters))
        if self.artifact_id is not None and self.total:
            update_progress_artifact(self.artifact_id, progress=100.0 * self.done / self.total)

    @contextmanager
    def track_generation(self, completions_are_items: bool = False) -> Iterator[None]:
        """Count the completions (and tokens) the LLM backends finish inside this block."""

        def on_progress(completions: int, tokens: int | None) -> None:
            self.advance(completions if completions_are_items else 0, completions=completions, tokens=tokens)

        with generation_progress(on_progress):
            yield

    def close(self) -> None:
        if _display is not None:
            _display.finish(self.key)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
