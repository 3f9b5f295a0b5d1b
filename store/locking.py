"""Taking turns with the store, and waiting for it while another process holds it.

A DuckDB file takes one writer process or any number of read-only ones at a time. Opening a file
that another process holds waits for it (retrying with backoff, up to $RMFORGE_LOCK_TIMEOUT
seconds), then raises StoreBusy naming the holder; a lake's commits that keep conflicting with
other writers wait the same way (rmforge.store.lake). Inside one process, the threads on one file
take turns too: opening and closing (OPEN_CLOSE_LOCK), and write transactions (`write_turn`).

A process that waits for a file says so: it stamps a marker beside the file at every try
(`<file>.wait`, removed once it gets in), so that a holder that keeps the file open across a long
job (rmforge.store.held) can close it for the waiter (`others_waiting`). DuckDB's own lock gives
the holder no sign of a waiter.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from rmforge.store.errors import StoreBusy
from rmforge.store.location import StoreLocation, check_store_file

LOCK_TIMEOUT_ENV = "RMFORGE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 300.0
# Short waits at first (a batch holds the file for milliseconds), capped so that a waiter does not
# sleep through the gaps between another command's batches.
_FIRST_BACKOFF_S = 0.01
MAX_BACKOFF_S = 0.2
# A marker stamped this recently means a process is waiting: it stamps at every try, at least every
# MAX_BACKOFF_S; an older one is a leftover of a waiter that was killed.
WAITING_FRESH_S = 2.0
# Threads of one process share one DuckDB instance per file: two opening (DDL) or one opening
# while another closes the last connection fail with catalog or file-handle conflicts.
OPEN_CLOSE_LOCK = threading.RLock()
# One write transaction at a time per file in this process (the file lock keeps other processes
# out): a key check and the insert it guards must not interleave with another writer's.
_file_write_locks: dict[str, threading.RLock] = {}
# DuckDB names the holder ("... held in /usr/bin/python3 (PID 123)"), or only a PID, 0 when it
# could not tell (a lock taken while the holder was still opening the file).
_LOCK_HOLDER = re.compile(
    r"Conflicting lock is held in (?:(?P<program>.*?) \(PID (?P<pid>\d+)\)|PID (?P<bare_pid>\d+))"
)

T = TypeVar("T")


def write_turn(path: Path) -> threading.RLock:
    """The lock this process's write transactions on the file at `path` take turns with."""
    return _file_write_locks.setdefault(str(path.resolve()), threading.RLock())


def lock_timeout() -> float:
    """Seconds a command waits for a busy store ($RMFORGE_LOCK_TIMEOUT, default 300)."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if seconds < 0:
        raise ValueError(f"{LOCK_TIMEOUT_ENV}={raw!r} must be >= 0")
    return seconds


def retry_while_busy(
    attempt: Callable[[], T], is_busy: Callable[[duckdb.Error], bool], why: Callable[[duckdb.Error, float], str]
) -> T:
    """Run `attempt` until it succeeds or raises a non-busy error; StoreBusy once the wait runs out."""
    timeout = lock_timeout()
    deadline = time.monotonic() + timeout
    backoff = _FIRST_BACKOFF_S
    while True:
        try:
            return attempt()
        except duckdb.Error as exc:
            if not is_busy(exc):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreBusy(why(exc, timeout)) from None
            # Jitter keeps two waiting processes from retrying in lockstep.
            time.sleep(min(left, random.uniform(backoff / 2, backoff)))
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def _is_file_locked(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and _LOCK_HOLDER.search(str(exc)) is not None


def _lock_holder(message: str) -> str:
    """'PID 123 (rmforge annotate ...)' from DuckDB's lock error and the holder's /proc entry."""
    match = _LOCK_HOLDER.search(message)
    if match is None or match["bare_pid"] == "0":
        return "another process"
    pid, command = match["pid"] or match["bare_pid"], match["program"] or "unknown program"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        command = " ".join(" ".join(argv).split()) or command  # one line, even for `python -c` scripts
    except OSError:  # gone already, or another machine's process on a shared disk
        pass
    if len(command) > 200:
        command = command[:197] + "..."
    return f"PID {pid} ({command})"


def waiting_marker(path: Path) -> Path:
    return path.with_name(path.name + ".wait")


def _stamp_waiting(path: Path) -> None:
    # In a folder this process may not write, no marker: a holder then keeps the file until its job ends.
    with contextlib.suppress(OSError):
        waiting_marker(path).touch()


def others_waiting(path: Path) -> bool:
    """Whether another process is waiting to open the DuckDB file at `path` (its marker is fresh)."""
    try:
        stamped = waiting_marker(path).stat().st_mtime
    except OSError:
        return False
    return time.time() - stamped < WAITING_FRESH_S


# The DuckDB files this process has connections to, with how many, and a lock per file for
# connecting and closing. A process loses every POSIX lock it holds on a file when it closes any
# descriptor of that file: reading a file's header while this process holds it would drop DuckDB's
# lock, and another process could then open the file beside this one's connections. So the header
# is read only before the first connection, never beside one.
_connections: dict[str, int] = {}
_connection_locks: dict[str, threading.RLock] = {}


def _connection_lock(path: Path) -> threading.RLock:
    return _connection_locks.setdefault(str(path.resolve()), threading.RLock())


def connect_file(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Connect to the DuckDB file, waiting while another process holds it (and saying so: see
    above). Close the connection with `close_file`."""
    key = str(path.resolve())
    with _connection_lock(path):
        if not _connections.get(key):
            check_store_file(StoreLocation(str(path)))  # DuckDB's own error names no store and no fix
        connection = _wait_and_connect(path, read_only)
        _connections[key] = _connections.get(key, 0) + 1
        return connection


def close_file(path: Path, connection: duckdb.DuckDBPyConnection) -> None:
    """Close a connection `connect_file` made."""
    key = str(path.resolve())
    with _connection_lock(path):
        connection.close()
        _connections[key] -= 1


def _wait_and_connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    waited = False

    def attempt() -> duckdb.DuckDBPyConnection:
        nonlocal waited
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if _is_file_locked(exc):
                waited = True
                _stamp_waiting(path)
            raise

    try:
        return retry_while_busy(
            attempt,
            _is_file_locked,
            lambda exc, timeout: (
                f"{path} is locked by {_lock_holder(str(exc))}; waited {timeout:g} s "
                f"(set {LOCK_TIMEOUT_ENV} to wait longer)"
            ),
        )
    finally:
        if waited:  # a waiter still waiting stamps it again at its next try
            with contextlib.suppress(OSError):
                waiting_marker(path).unlink(missing_ok=True)
