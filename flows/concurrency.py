"""Prefect global concurrency limits for deployment runs (see README "Scheduled runs"): one
writer per store, one GPU stage at a time. Created on first use."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import deployment

from rmforge.flows import run_logger

GPU_LIMIT = "rmforge-gpu"
_held_limits: set[str] = set()  # a pipeline's subflows run in its process and already hold its slots
_held_lock = threading.Lock()


def store_limit_name(db: str) -> str | None:
    """The concurrency limit of a store file: its name plus a hash of its full path. None for a
    DuckLake, which takes many writers at once."""
    if db.startswith("ducklake:"):
        return None
    path = Path(db).resolve()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", path.name).strip("-")
    return f"rmforge-store-{slug}-{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"


def _ensure_limit(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:  # another run created it first
                pass


@contextmanager
def exclusive(name: str | None) -> Iterator[None]:
    """Hold one slot of the limit `name` (limit 1) for the block, in deployment runs only.

    Deployment runs are the ones started by schedules and workers, possibly side by side; a
    command run by hand has no shared server to coordinate with and relies on the store's
    own wait for its file lock. Re-entrant within a process.
    """
    taken: str | None = None  # the limit this block takes, if any
    with _held_lock:
        if name is not None and name not in _held_limits and deployment.id is not None:
            taken = name
            _held_limits.add(taken)
    if taken is None:
        yield
        return
    try:
        _ensure_limit(taken)
        run_logger().info("waiting for concurrency slot %s", taken)
        # Leases are renewed while the block runs; a killed run's lease lapses after a minute.
        with concurrency(taken, occupy=1, lease_duration=60, strict=True):
            yield
    finally:
        with _held_lock:
            _held_limits.discard(taken)
