"""`tracked_run`: the record of a flow run in the store from start to end (rmforge.store.runs),
inside the store's concurrency slot, with its report published when it completes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prefect.runtime import flow_run

from rmforge.flows import run_logger
from rmforge.flows.artifacts import publish_report
from rmforge.flows.concurrency import exclusive, store_limit_name
from rmforge.store.runs import Heartbeat, heartbeat_interval, mark_crashed_runs, record_run_end, record_run_start


def current_run_id() -> str:
    return str(flow_run.id or uuid.uuid4())


@dataclass
class TrackedRun:
    """The run a flow is inside; the flow fills `summary` as it goes."""

    db: str
    flow: str
    run_id: str
    summary: dict[str, Any] = field(default_factory=dict)
    resumes: str | None = None  # the crashed run of the same flow this one picks up after


def _final_summary(run: TrackedRun) -> dict[str, Any]:
    # A flow may have replaced `summary` with its own counts.
    return {"resumes": run.resumes, **run.summary} if run.resumes else run.summary


@contextmanager
def tracked_run(db: str, flow: str, config: Any) -> Iterator[TrackedRun]:
    """Record a flow run in `runs` from start to end, and publish its report.

    Completed runs get their summary and a report artifact; an exception marks the run
    `failed` with the error; an interruption (Ctrl-C, SIGTERM, Prefect cancellation: any
    BaseException that is not an Exception) marks it `cancelled`. Either way what the
    run already wrote stays: every batch is written in one transaction.

    While the run is alive a heartbeat thread stamps its row; a run killed without a word
    (SIGKILL) stops beating, shows `crashed` (view `runs_health`, `rmforge status`), and the
    next run of the same flow marks it so and says it resumes it (`resumes` in its summary).
    """
    with exclusive(store_limit_name(db)), _tracked(db, flow, config) as run:
        yield run


@contextmanager
def _tracked(db: str, flow: str, config: Any) -> Iterator[TrackedRun]:
    interval = heartbeat_interval()
    run = TrackedRun(db, flow, record_run_start(db, current_run_id(), flow, config, interval))
    crashed = mark_crashed_runs(db, flow, run.run_id)
    if crashed:
        run.resumes = run.summary["resumes"] = crashed[0]
        run_logger().info(
            "%s resumes crashed run %s%s",
            flow,
            run.resumes,
            f" (also marked crashed: {', '.join(crashed[1:])})" if crashed[1:] else "",
        )
    try:
        with Heartbeat(db, run.run_id, interval):
            yield run
    except Exception as exc:
        record_run_end(db, run.run_id, flow, "failed", {**_final_summary(run), "error": f"{type(exc).__name__}: {exc}"})
        raise
    except BaseException:
        record_run_end(db, run.run_id, flow, "cancelled", _final_summary(run))
        raise
    record_run_end(db, run.run_id, flow, "completed", _final_summary(run))
    publish_report(db, flow, run.run_id, _final_summary(run))
