"""A flow run's report as Prefect artifacts: markdown with its summary, and tables of the store's
rows and of the labels per annotator."""

from __future__ import annotations

import json
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from rmforge.store import Store


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
