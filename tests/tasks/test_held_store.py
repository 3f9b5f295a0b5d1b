"""A store held open across a job's steps (rmforge.store.held), in this process; handing the file
to a waiting process is tested in test_store_locking.py."""

import os
import threading
import time
from pathlib import Path

import pytest

from rmforge.store import Store
from rmforge.store.held import HeldStore
from rmforge.store.locking import WAITING_FRESH_S, waiting_marker
from tests.builders import make_problem


def test_steps_share_one_store_and_see_each_others_writes(db):
    with HeldStore(db) as held:
        with held.use() as first:
            first.write("problems", [make_problem()])
        with held.use() as second:
            assert second is first and second.count("problems") == 1
        assert held.is_open
    assert not held.is_open
    with Store(db, read_only=True) as store:  # closed for good: committed and the file free
        assert store.count("problems") == 1


def test_a_step_that_raises_closes_the_store_and_the_next_opens_a_fresh_one(db):
    with HeldStore(db) as held:
        with pytest.raises(RuntimeError, match="boom"), held.use() as store, store.transaction():
            store.write("problems", [make_problem()])
            raise RuntimeError("boom")
        assert not held.is_open
        with held.use() as store:
            assert store.count("problems") == 0  # the failed step's transaction was rolled back


def test_a_stale_waiting_marker_does_not_close_the_store(db):
    """A waiter that was killed leaves its marker behind: only a fresh one means someone waits."""
    marker = waiting_marker(Path(db))
    with HeldStore(db) as held:
        with held.use():
            pass
        marker.touch()
        old = time.time() - 2 * WAITING_FRESH_S
        os.utime(marker, (old, old))
        with held.use():
            pass
        assert held.is_open
        marker.touch()
        with held.use():
            pass
        assert not held.is_open


def test_a_lake_store_stays_open_whatever_the_markers(lake_db, tmp_path):
    with HeldStore(lake_db) as held:
        with held.use() as store:
            store.write("problems", [make_problem()])
        with held.use() as store:
            assert store.count("problems") == 1
        assert held.is_open


def test_a_holder_that_closed_for_a_waiter_stays_away_until_the_waiter_got_in(db):
    """Reopening at once would take the file back before the waiter's next try, every step, so a
    `rmforge sql` in a loop saw nothing until annotate ended (found by CI under load)."""
    marker = waiting_marker(Path(db))
    with HeldStore(db) as held:
        with held.use() as store:
            store.write("problems", [make_problem()])
            marker.touch()  # a process starts waiting during this step
        assert not held.is_open
        got_in = []

        def waiter_gets_in():
            time.sleep(0.3)
            got_in.append(time.monotonic())
            marker.unlink()  # what a waiter does once it has the file

        waiter = threading.Thread(target=waiter_gets_in)
        waiter.start()
        with held.use():
            reopened = time.monotonic()
        waiter.join()
    assert reopened >= got_in[0]
