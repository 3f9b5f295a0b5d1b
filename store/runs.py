"""A flow run's record in the `runs` table: its start, its heartbeat while it lives, its end, and
the runs of a flow whose heartbeat stopped (crashed). Plain functions, no Prefect: the flows wrap
them around each run (rmforge.flows.runs.tracked_run), and they must still work while a run is
being interrupted.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from rmforge.schemas.records import RunRecord, RunStatus, canonical_json, utc_now
from rmforge.schemas.tables import DEFAULT_HEARTBEAT_S
from rmforge.store.store import Store

HEARTBEAT_ENV = "RMFORGE_HEARTBEAT_S"
logger = logging.getLogger("rmforge.runs")


def heartbeat_interval() -> float:
    """Seconds between a run's heartbeats ($RMFORGE_HEARTBEAT_S, default 30)."""
    raw = os.environ.get(HEARTBEAT_ENV) or str(DEFAULT_HEARTBEAT_S)
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{HEARTBEAT_ENV}={raw!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ValueError(f"{HEARTBEAT_ENV}={raw!r} must be > 0")
    return seconds


def record_run_start(db: str, run_id: str, flow: str, config: Any, heartbeat_s: float | None = None) -> str:
    config_json = config.model_dump_json() if hasattr(config, "model_dump_json") else canonical_json(config)
    record = RunRecord(
        run_id=run_id, flow=flow, config=config_json, status="running", heartbeat_s=heartbeat_s or heartbeat_interval()
    )
    record.heartbeat_at = record.started_at
    with Store(db) as store:
        store.write("runs", [record], on_conflict="replace")
    return run_id


def mark_crashed_runs(db: str, flow: str, run_id: str) -> list[str]:
    """Mark `flow`'s runs whose heartbeat stopped (view `runs_health`) `crashed` for good;
    newest first. What they wrote stays: the new run skips it and does the rest. A run
    already marked was resumed by an earlier run and is not reported again."""
    with Store(db) as store:
        crashed = [
            r["run_id"]
            for r in store.rows(
                "SELECT h.run_id FROM runs_health h JOIN runs r USING (run_id) "
                "WHERE h.flow = ? AND h.status = 'crashed' AND r.status = 'running' AND h.run_id <> ? "
                "ORDER BY h.started_at DESC",
                [flow, run_id],
            )
        ]
        if crashed:
            store.execute(
                "UPDATE runs SET status = 'crashed' WHERE status = 'running' AND run_id IN "
                f"({', '.join('?' * len(crashed))})",
                crashed,
            )
    return crashed


class Heartbeat:
    """A daemon thread that stamps `runs.heartbeat_at` every `interval` seconds.

    Each beat is one short UPDATE; a beat that fails (the store busy past its wait, a disk
    hiccup) is logged and skipped: a missed beat must never fail the run itself.
    """

    def __init__(self, db: str, run_id: str, interval: float) -> None:
        self.db, self.run_id, self.interval = db, run_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, name=f"heartbeat-{run_id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            with Store(self.db) as store:
                store.execute(
                    "UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND status = 'running'", [utc_now(), self.run_id]
                )
        except Exception as exc:  # noqa: BLE001 - any failure: skip this beat, never the run
            logger.warning("run %s: heartbeat skipped (%s: %s)", self.run_id, type(exc).__name__, exc)


def record_run_end(db: str, run_id: str, flow: str, status: RunStatus, summary: dict[str, Any]) -> None:
    with Store(db) as store:
        row = store.rows("SELECT * FROM runs WHERE run_id = ?", [run_id])
        record = (
            RunRecord.model_validate(row[0])
            if row
            else RunRecord(run_id=run_id, flow=flow, config="{}", status="running")
        )
        record.status = status
        record.finished_at = utc_now()
        record.summary = canonical_json(summary)
        store.write("runs", [record], on_conflict="replace")
