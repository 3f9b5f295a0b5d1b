"""Run bookkeeping and human-readable reports (Prefect artifacts)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger
from prefect.runtime import deployment, flow_run

from rmforge.generators.base import generation_progress
from rmforge.schemas.records import RunRecord, canonical_json, utc_now
from rmforge.schemas.tables import DEFAULT_HEARTBEAT_S
from rmforge.problems.problem_import import ImportResult
from rmforge.tasks.store import Store


def current_run_id() -> str:
    return str(flow_run.id or uuid.uuid4())


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


# Bookkeeping is plain functions, not tasks: it must still work while a run is being
# interrupted, and it is not work worth a task run of its own in the UI.
def record_run_start(db: str, flow: str, config: Any, heartbeat_s: float | None = None) -> str:
    run_id = current_run_id()
    config_json = config.model_dump_json() if hasattr(config, "model_dump_json") else canonical_json(config)
    record = RunRecord(run_id=run_id, flow=flow, config=config_json, status="running",
                       heartbeat_s=heartbeat_s or heartbeat_interval())
    record.heartbeat_at = record.started_at
    with Store(db) as store:
        store.write("runs", [record], on_conflict="replace")
    return run_id


def mark_crashed_runs(db: str, flow: str, run_id: str) -> list[str]:
    """Mark `flow`'s runs whose heartbeat stopped (view `runs_health`) `crashed` for good;
    newest first. What they wrote stays: the new run skips it and does the rest. A run
    already marked was resumed by an earlier run and is not reported again."""
    with Store(db) as store:
        crashed = [r["run_id"] for r in store.rows(
            "SELECT h.run_id FROM runs_health h JOIN runs r USING (run_id) "
            "WHERE h.flow = ? AND h.status = 'crashed' AND r.status = 'running' AND h.run_id <> ? "
            "ORDER BY h.started_at DESC", [flow, run_id])]
        if crashed:
            store.execute("UPDATE runs SET status = 'crashed' WHERE status = 'running' AND run_id IN "
                          f"({', '.join('?' * len(crashed))})", crashed)
    return crashed


def _run_logger() -> Any:
    """The flow run's logger (shown in the Prefect UI), or this module's outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


class Heartbeat:
    """A daemon thread that stamps `runs.heartbeat_at` every `interval` seconds.

    Each beat is one short UPDATE; a beat that fails (the store busy past its wait, a disk
    hiccup) is logged and skipped: a missed beat must never fail the run itself.
    """

    def __init__(self, db: str, run_id: str, interval: float) -> None:
        self.db, self.run_id, self.interval = db, run_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, name=f"heartbeat-{run_id[:8]}",
                                        daemon=True)

    def __enter__(self) -> "Heartbeat":
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
                store.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND status = 'running'",
                              [utc_now(), self.run_id])
        except Exception as exc:  # noqa: BLE001 - any failure: skip this beat, never the run
            logger.warning("run %s: heartbeat skipped (%s: %s)", self.run_id, type(exc).__name__, exc)


def record_run_end(db: str, run_id: str, flow: str, status: str, summary: dict[str, Any]) -> None:
    with Store(db) as store:
        row = store.rows("SELECT * FROM runs WHERE run_id = ?", [run_id])
        record = (RunRecord.model_validate(row[0]) if row
                  else RunRecord(run_id=run_id, flow=flow, config="{}", status="running"))
        record.status = status
        record.finished_at = utc_now()
        record.summary = canonical_json(summary)
        store.write("runs", [record], on_conflict="replace")


# Prefect global concurrency limits for deployment runs (see README "Scheduled runs"): one
# writer per store, one GPU stage at a time. Created on first use.
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
    with _held_lock:
        nothing_to_take = name is None or name in _held_limits or deployment.id is None
        if not nothing_to_take:
            _held_limits.add(name)
    if nothing_to_take or name is None:  # (name None: for the type checker)
        yield
        return
    try:
        _ensure_limit(name)
        _run_logger().info("waiting for concurrency slot %s", name)
        # Leases are renewed while the block runs; a killed run's lease lapses after a minute.
        with concurrency(name, occupy=1, lease_duration=60, strict=True):
            yield
    finally:
        with _held_lock:
            _held_limits.discard(name)


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
    run = TrackedRun(db, flow, record_run_start(db, flow, config, interval))
    crashed = mark_crashed_runs(db, flow, run.run_id)
    if crashed:
        run.resumes = run.summary["resumes"] = crashed[0]
        _run_logger().info(
            "%s resumes crashed run %s%s", flow, run.resumes,
            f" (also marked crashed: {', '.join(crashed[1:])})" if crashed[1:] else "")
    try:
        with Heartbeat(db, run.run_id, interval):
            yield run
    except Exception as exc:
        record_run_end(db, run.run_id, flow, "failed",
                       {**_final_summary(run), "error": f"{type(exc).__name__}: {exc}"})
        raise
    except BaseException:
        record_run_end(db, run.run_id, flow, "cancelled", _final_summary(run))
        raise
    record_run_end(db, run.run_id, flow, "completed", _final_summary(run))
    publish_report(db, flow, run.run_id, _final_summary(run))


@task(name="store-problems", cache_policy=NO_CACHE)
def store_problems(db: str, result: ImportResult) -> dict[str, int]:
    with Store(db) as store:
        return {
            "problems": store.write("problems", result.problems),
            "quarantined": store.write("quarantine", result.quarantine),
        }


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
        self.artifact_id: UUID | None = (
            create_progress_artifact(progress=0.0, description=description) if flow_run.id else None
        )
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

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_\n"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(r[h]) for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def verdict_summary(store: Store, table: str) -> list[dict[str, Any]]:
    """Verdict counts per annotator in `step_labels` or `outcome_labels`."""
    return store.rows(
        f"""
        SELECT annotator, count(*) AS labels,
               count(*) FILTER (verdict = 'correct') AS correct,
               count(*) FILTER (verdict = 'incorrect') AS incorrect,
               count(*) FILTER (verdict = 'unknown') AS unknown
        FROM {table} GROUP BY annotator ORDER BY annotator
        """
    )


def publish_report(db: str, flow: str, run_id: str, summary: dict[str, Any]) -> str:
    """A markdown report and tables for the run; returns the markdown."""
    with Store(db) as store:
        counts = store.counts()
        labels = verdict_summary(store, "step_labels")
        outcomes = verdict_summary(store, "outcome_labels")
    table_counts = [{"table": k, "rows": v} for k, v in counts.items()]
    markdown = (
        f"# rmforge {flow} run `{run_id}`\n\n"
        f"Database: `{db}`\n\n## This run\n\n```json\n{json.dumps(summary, indent=2, default=str)}\n```\n\n"
        f"## Tables\n\n{_markdown_table(table_counts)}\n"
        f"## Step labels by annotator\n\n{_markdown_table(labels)}\n"
        f"## Outcome labels\n\n{_markdown_table(outcomes)}"
    )
    if flow_run.id:
        create_markdown_artifact(markdown, key=f"rmforge-{flow}-report", description=f"rmforge {flow} summary")
        create_table_artifact(table_counts, key=f"rmforge-{flow}-tables", description="rows per table")
        if labels:
            create_table_artifact(labels, key=f"rmforge-{flow}-step-labels", description="step labels per annotator")
    return markdown
