"""Waiting for a DuckDB file that another process holds, and the one-line error when it stays held."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmforge.store import LOCK_TIMEOUT_ENV, Store, StoreBusy, lock_timeout
from rmforge.store.held import HeldStore
from rmforge.store.locking import others_waiting, waiting_marker
from tests.builders import make_problem

pytestmark = pytest.mark.slow  # processes holding the store

ROOT = Path(__file__).resolve().parents[2]
# argv[1]: database, argv[2]: rw | ro, argv[3]: seconds to hold it. The first line marks the command line.
HOLDER = (
    "# store-holder-marker\n"
    "import sys, time\n"
    "from rmforge.store import Store\n"
    "store = Store(sys.argv[1], read_only=sys.argv[2] == 'ro')\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[3]))\n"
    "store.close()\n"
)


def env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def hold(db, mode, seconds):
    """A separate process that opens the store and keeps it open."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db, mode, str(seconds)], stdout=subprocess.PIPE, text=True, env=env()
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture()
def created(db):
    with Store(db) as store:
        store.write("problems", [make_problem()])
    return db


@pytest.mark.parametrize(("holder_mode", "read_only"), [("rw", False), ("rw", True), ("ro", False)])
def test_an_opener_waits_for_the_holder_then_proceeds(created, holder_mode, read_only):
    holder = hold(created, holder_mode, 1.5)
    try:
        started = time.monotonic()
        with Store(created, read_only=read_only) as store:
            waited = time.monotonic() - started
            assert store.count("problems") == 1
    finally:
        holder.wait(timeout=30)
    assert waited >= 0.5  # it really was locked out, and got in once the holder let go


def test_readers_share_the_file(created):
    holder = hold(created, "ro", 5)
    try:
        started = time.monotonic()
        with Store(created, read_only=True) as store:
            assert store.count("problems") == 1
        assert time.monotonic() - started < 3
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_store_held_past_the_limit_names_the_holder(created, monkeypatch, read_only):
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.5")
    holder = hold(created, "rw", 60)
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusy) as caught:
            Store(created, read_only=read_only)
        assert 0.5 <= time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    message = str(caught.value)
    assert "\n" not in message
    assert f"PID {holder.pid} " in message and "store-holder-marker" in message
    assert created in message and LOCK_TIMEOUT_ENV in message


def test_cli_prints_a_busy_store_as_one_line(created):
    holder = hold(created, "rw", 60)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rmforge.cli", "sql", "SELECT count(*) FROM problems", "--db", created],
            capture_output=True,
            text=True,
            env=env(**{LOCK_TIMEOUT_ENV: "1"}),
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 75, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and f"PID {holder.pid} " in lines[0] and "store-holder-marker" in lines[0], lines


def assert_busy_in_one_line(created, arguments, **settings):
    """`rmforge ARGUMENTS` on a store another process holds: exit 75 and one line naming the holder."""
    holder = hold(created, "rw", 120)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rmforge.cli", *arguments],
            capture_output=True,
            text=True,
            timeout=300,
            env=env(**{LOCK_TIMEOUT_ENV: "1", **settings}),
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 75, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"PID {holder.pid} " in lines[0], lines


def test_a_flow_command_prints_a_busy_store_as_one_line(created, tmp_path):
    """Prefect logs the flow run's failure with its traceback; the user sees only rmforge's line."""
    assert_busy_in_one_line(
        created, ["annotate", "--annotator", "answer", "--db", created], RMFORGE_STATE_DIR=str(tmp_path / "state")
    )


def test_review_prints_a_busy_store_as_one_line(created):
    assert_busy_in_one_line(created, ["review", "--db", created, "--port", "1"])


def test_lock_timeout_setting(monkeypatch):
    monkeypatch.delenv(LOCK_TIMEOUT_ENV, raising=False)
    assert lock_timeout() == 300
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "2.5")
    assert lock_timeout() == 2.5
    for bad in ("soon", "-1"):
        monkeypatch.setenv(LOCK_TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=LOCK_TIMEOUT_ENV):
            lock_timeout()


@pytest.mark.parametrize(
    "message, holder",
    [
        (
            'IO Error: Could not set lock on file "s.duckdb": Conflicting lock is held in /usr/bin/python3.11 (PID 4242) '
            "by user root.",
            "PID 4242",
        ),
        # DuckDB could not tell who holds it (seen while two annotates opened one store): still a lock to wait for
        (
            'IO Error: Could not set lock on file "s.duckdb": Conflicting lock is held in PID 0. However, you would be '
            "able to open this database in read-only mode",
            "another process",
        ),
    ],
)
def test_both_forms_of_duckdbs_lock_error_are_a_busy_store(message, holder):
    import duckdb

    from rmforge.store.locking import _is_file_locked, _lock_holder

    assert _is_file_locked(duckdb.IOException(message))
    assert _lock_holder(message).startswith(holder)


# argv[1]: database. Opens the store (waiting for it), reads, closes.
OPENER = "import sys\nfrom rmforge.store import Store\nwith Store(sys.argv[1]) as store:\n    print(store.count('problems'))\n"


def test_a_held_store_hands_the_file_to_a_waiting_process_between_steps(created):
    path = Path(created)
    with HeldStore(created) as held:
        with held.use():
            pass
        opener = subprocess.Popen([sys.executable, "-c", OPENER, created], stdout=subprocess.PIPE, text=True, env=env())
        deadline = time.monotonic() + 60
        while not others_waiting(path):  # the opener is locked out and says so
            assert opener.poll() is None and time.monotonic() < deadline, "the opener never waited"
            time.sleep(0.05)
        with held.use() as store:
            store.write("problems", [make_problem("Another question?", "1")])
        assert not held.is_open  # the step ended: the file went to the waiter
        out, _ = opener.communicate(timeout=60)
        assert opener.returncode == 0 and out.strip() == "2"
        assert not waiting_marker(path).exists()
        with held.use() as store:  # the next step takes the file back
            assert store.count("problems") == 2


def test_a_second_store_in_the_holding_process_keeps_other_processes_out(created):
    """A process that has the file open and opens (and closes) it once more, as a heartbeat or a
    held store's neighbour does, still holds it: another process must keep waiting."""
    with Store(created) as held:
        with Store(created) as second:
            second.count("problems")
        with Store(created, read_only=False) as third:
            third.count("problems")
        locked_out = subprocess.run(
            [sys.executable, "-c", OPENER, created],
            capture_output=True,
            text=True,
            env=env(**{LOCK_TIMEOUT_ENV: "0.5"}),
            timeout=60,
        )
        assert locked_out.returncode != 0 and "is locked by" in locked_out.stderr, locked_out.stdout
        assert held.count("problems") == 1
