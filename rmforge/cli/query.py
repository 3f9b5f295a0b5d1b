"""The commands that read the store or the registry and change nothing: `sql`, `status`,
`report` (a run's report) and `annotators`. The store is opened in `rmforge.sql_sandbox`."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel
from rich.table import Table

from rmforge.cli.options import DbOption
from rmforge.cli.output import console, counted, report, say, text_table
from rmforge.errors import UserError


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _cell(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return "" if value is None else str(value)


def sql(
    query: str = typer.Argument(..., help="One SQL statement; the store is opened read-only."),
    db: str | None = DbOption,
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
    max_width: int = typer.Option(60, min=1, help="Truncate table cells to this many characters."),
) -> None:
    """Run a read-only SQL query against the store and print the result."""
    from rmforge import sql_sandbox

    sql_sandbox.check_statement(query)
    with sql_sandbox.sandboxed_store(db) as store:
        result = sql_sandbox.query(store, query)
    rows = result.to_pylist()
    if format is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, default=str, ensure_ascii=False, indent=2) + "\n")
    elif format is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(result.column_names)
        writer.writerows([_cell(row[c]) for c in result.column_names] for row in rows)
        sys.stdout.write(buffer.getvalue())
    else:
        console.print(
            text_table(
                result.column_names,
                ([_cell(row[c])[:max_width] for c in result.column_names] for row in rows),
                caption=counted(len(rows), "row"),
            )
        )


def status(db: str | None = DbOption, runs: int = typer.Option(8, min=1, help="How many recent runs.")) -> None:
    """Rows per table and the last runs with their state."""
    from rmforge.server import read_state
    from rmforge.sql_sandbox import sandboxed_store

    with sandboxed_store(db) as store:
        counts = store.counts()
        # runs_health shows a run whose heartbeat stopped as `crashed`; a store no writer of
        # this version has opened yet lacks the view.
        has_health = store.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'runs_health'")[0][0]
        recent = store.rows(
            f"SELECT run_id, flow, status, started_at, finished_at, summary FROM {'runs_health' if has_health else 'runs'} "
            "ORDER BY started_at DESC LIMIT ?",
            [runs],
        )
    tables = Table("table", "rows", title=f"Store {store.location}")
    for name, rows in counts.items():
        tables.add_row(name, str(rows))
    console.print(tables)
    history = Table("run", "flow", "status", "started (UTC)", "took", title="Last runs")
    styles = {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "crashed": "red"}
    for r in recent:
        took = f"{(r['finished_at'] - r['started_at']).total_seconds():.1f} s" if r["finished_at"] else ""
        history.add_row(
            r["run_id"][:8],
            r["flow"],
            f"[{styles.get(r['status'], '')}]{r['status']}[/]",
            r["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
            took,
        )
    console.print(history)
    if any(r["status"] == "crashed" for r in recent):
        say(
            "A crashed run stopped without a word (killed, machine lost); what it wrote is kept. "
            "Run the same command again: it resumes where the crashed run stopped."
        )
    server = read_state()
    console.print(
        f"Prefect server: {server.ui_url} (UI)"
        if server
        else "Prefect server: none running (`rmforge server start` makes commands start faster)"
    )


def run_report(
    run_id: str = typer.Argument(..., metavar="RUN", help="A run id, a unique prefix of one, or `last`."),
    db: str | None = DbOption,
    json_output: bool = typer.Option(False, "--json", help="Print the report's numbers as JSON (nothing else)."),
) -> None:
    """A curate or pipeline run's report: annotator agreement, label balance, cost per stage, and its chart."""
    from rmforge.sql_sandbox import sandboxed_store
    from rmforge.tasks.run_report import AGREEMENT_KEY, REFUTE_ONLY_NOTE, draw_report, report_tables

    with sandboxed_store(db) as store:
        if run_id == "last":
            runs = store.rows(
                "SELECT run_id, flow, summary FROM runs WHERE flow IN ('curate', 'pipeline') "
                "AND status = 'completed' ORDER BY finished_at DESC LIMIT 1"
            )
        else:
            runs = store.rows("SELECT run_id, flow, summary FROM runs WHERE starts_with(run_id, ?) LIMIT 2", [run_id])
    if not runs:
        raise UserError(
            f"no {'completed curate or pipeline ' if run_id == 'last' else ''}run "
            f"{'' if run_id == 'last' else repr(run_id) + ' '}in {store.location} (see `rmforge status`)"
        )
    if len(runs) > 1:
        raise UserError(f"run prefix {run_id!r} is ambiguous ({runs[0]['run_id']}, {runs[1]['run_id']}, ...)")
    run = runs[0]
    summary = json.loads(run["summary"])
    numbers = summary.get("report") or summary.get("curate", {}).get("report")
    if not numbers:
        raise UserError(f"run {run['run_id']} ({run['flow']}) has no report: curate and pipeline runs write one")
    if json_output:
        report(numbers, True, [])
        return
    titles = {
        "agreement": "Annotator agreement on steps both decided",
        "balance": "Label balance",
        "stages": "Seconds per stage",
        "completions": "LLM completions per annotator",
    }
    captions = {
        "agreement": AGREEMENT_KEY,
        "balance": "newest label per annotator; consensus over the store",
        "completions": "whole store",
    }
    for name, rows in report_tables(numbers).items():
        if not rows:
            say(f"{titles[name]}: none")
            continue
        console.print(
            text_table(
                list(rows[0]),
                ([str(value) for value in row.values()] for row in rows),
                title=titles[name],
                caption=captions.get(name),
                first_column_no_wrap=True,
            )
        )
    if any(row["refute_only"] for row in numbers["balance"]):
        say(f"{REFUTE_ONLY_NOTE}.")
    chart = Path(numbers["chart"])
    regenerated = not chart.is_file()
    if regenerated:
        draw_report(numbers, chart)
    say(f"Chart: {chart}{' (regenerated)' if regenerated else ''}")


def list_annotators() -> None:
    """Every annotator: what it labels, what it needs, and its options."""
    from rmforge.annotators import REGISTRY, annotator_class
    from rmforge.annotators.base import LLMAnnotator

    for name in REGISTRY:
        cls = annotator_class(name)
        evidence = cls.evidence
        labels = []
        if evidence.labels_steps:
            verbs = [v for v, on in (("confirms", evidence.confirms_steps), ("refutes", evidence.refutes_steps)) if on]
            labels.append(f"steps ({' and '.join(verbs)})")
        if evidence.labels_outcomes:
            labels.append("outcomes")
        if evidence.score != "none":
            labels.append(f"score: {evidence.score}")
        needs = []
        # A process reward model's probability is its own reading of the steps, no gold involved.
        scores_with_a_reward_model = "scorer" in cls.Config.model_fields
        # Outcome verifiers grade against the gold answer; MC estimators grade completions against it.
        if (evidence.labels_outcomes and evidence.authority == "verifier") or (
            evidence.score in ("probability", "advantage") and not scores_with_a_reward_model
        ):
            needs.append("gold answer")
        if issubclass(cls, LLMAnnotator):
            needs.append("a model (generator)")
        if scores_with_a_reward_model:
            needs.append("a process reward model (scorer)")
        unavailable = cls().availability()
        line = (
            f"[bold]{name}[/bold]  labels {', '.join(labels) or 'nothing'}; authority {evidence.authority}; "
            f"needs {', '.join(needs) or 'nothing else'}"
        )
        say(line + (f"; unavailable here: {unavailable}" if unavailable else ""))
        doc = (cls.__doc__ or "").strip().splitlines()
        if doc:
            say(f"  {doc[0]}")
        for field_name, field in cls.Config.model_fields.items():
            default = field.get_default(call_default_factory=True)
            shown = default.model_dump_json() if isinstance(default, BaseModel) else repr(default)
            description = f"  {field.description}" if field.description else ""
            say(f"    {field_name} = {shown}{description}")
    say("Options go in a config file: annotator_options: {NAME: {OPTION: VALUE}}")
