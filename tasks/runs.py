"""Run bookkeeping and human-readable reports (Prefect artifacts)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run

from schemas.records import RunRecord, canonical_json, utc_now
from problems.importers import ImportResult
from tasks.store import Store


def current_run_id() -> str:
    return str(flow_run.id or uuid.uuid4())


@task(name="record-run-start", cache_policy=NO_CACHE)
def record_run_start(db: str, flow: str, config: Any) -> str:
    run_id = current_run_id()
    config_json = config.model_dump_json() if hasattr(config, "model_dump_json") else canonical_json(config)
    with Store(db) as store:
        store.write(
            "runs", [RunRecord(run_id=run_id, flow=flow, config=config_json, status="running")], on_conflict="replace"
        )
    return run_id


@task(name="record-run-end", cache_policy=NO_CACHE)
def record_run_end(db: str, run_id: str, flow: str, status: str, summary: dict[str, Any]) -> None:
    with Store(db) as store:
        row = store.rows("SELECT * FROM runs WHERE run_id = ?", [run_id])
        record = RunRecord.model_validate(row[0]) if row else RunRecord(run_id=run_id, flow=flow, config="{}", status="running")
        record.status = status
        record.finished_at = utc_now()
        record.summary = canonical_json(summary)
        store.write("runs", [record], on_conflict="replace")


@task(name="store-problems", cache_policy=NO_CACHE)
def store_problems(db: str, result: ImportResult) -> dict[str, int]:
    with Store(db) as store:
        return {
            "problems": store.write("problems", result.problems),
            "quarantined": store.write("quarantine", result.quarantine),
        }


class Progress:
    """A Prefect progress artifact, advanced batch by batch."""

    def __init__(self, description: str) -> None:
        # Outside a flow run (plain function calls in tests) there is nothing to attach to.
        self.artifact_id: UUID | None = (
            create_progress_artifact(progress=0.0, description=description) if flow_run.id else None
        )

    def update(self, done: int, total: int) -> None:
        if self.artifact_id is not None and total:
            update_progress_artifact(self.artifact_id, progress=100.0 * done / total)


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


@task(name="publish-report", cache_policy=NO_CACHE)
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


def mark_run_failed(flow: Any, run: Any, state: Any) -> None:
    """Flow state hook: a failed or crashed run is recorded as such, with the error."""
    with Store(run.parameters.get("db")) as store:
        row = store.rows("SELECT * FROM runs WHERE run_id = ?", [str(run.id)])
        if not row:
            return
        record = RunRecord.model_validate(row[0])
        record.status = "failed"
        record.finished_at = utc_now()
        record.summary = canonical_json({"error": str(state.message)})
        store.write("runs", [record], on_conflict="replace")
