"""One writable Store kept open across the many short steps of a long job (a flow run's batches).

Opening a DuckDB file and closing it again (a checkpoint, when it was written) cost about as much as a
batch's reads and writes themselves (bench/reports/store_throughput.md), and a closed file's
buffer pool is gone, so the next batch reads cold. A HeldStore opens the store at its first use
and keeps it open, but a DuckDB file takes one writing process at a time: after each use it
closes the file when another process waits for it (rmforge.store.locking: `others_waiting`), so
a `rmforge sql`, `rmforge review` or a second `annotate` gets its turn between two steps, as it
did when every step opened and closed the store. The next use opens it again, waiting its turn.
A lake takes many writers: its store stays open until the job ends.

Used by one thread (the flow's), like the Store it holds; transactions stay per step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rmforge.store.locking import MAX_BACKOFF_S, others_waiting
from rmforge.store.store import Store

# How long a holder that closed the file for a waiter stays away: the waiter retries at least every
# MAX_BACKOFF_S, and reopening at once would take the file back before its retry (starving it).
HANDOVER_S = 5 * MAX_BACKOFF_S


def give_the_waiter_its_turn(path: Path) -> None:
    """Wait until the process waiting for the file got in (it removes its marker) or HANDOVER_S passed."""
    deadline = time.monotonic() + HANDOVER_S
    while others_waiting(path) and time.monotonic() < deadline:
        time.sleep(0.01)


class HeldStore:
    def __init__(self, db: str | os.PathLike | None) -> None:
        self.db = db
        self._store: Store | None = None
        self._handed_to_waiter: Path | None = None  # the file this store was last closed for a waiter of

    def __enter__(self) -> HeldStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._store is not None

    @contextmanager
    def use(self) -> Iterator[Store]:
        """The held Store for one step (opened if it is not); afterwards the file goes to a
        process that waits for it. A step that raises closes it: the next opens a fresh one."""
        if self._store is None:
            if self._handed_to_waiter is not None:
                give_the_waiter_its_turn(self._handed_to_waiter)
                self._handed_to_waiter = None
            self._store = Store(self.db)
        store = self._store
        try:
            yield store
        except BaseException:
            self.close()
            raise
        path = store.location.path
        if path is not None and others_waiting(path):
            self.close()
            self._handed_to_waiter = path

    def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()
