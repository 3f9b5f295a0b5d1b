"""The `rmforge import` group: rollouts (JSONL/Parquet), ProcessBench and PRM800K-style labelled
solutions, each with a summary that says what became of every row."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer

from rmforge.cli.options import DbOption, JsonOption
from rmforge.cli.output import counted, given_db, next_command, report

import_app = typer.Typer(help="Import existing data.", no_args_is_help=True)


def _repeat_and_quarantine_lines(summary: dict[str, Any], row: str) -> list[str]:
    """The rows of an import that added nothing, one line per kind: the new rows alone do not add
    up to the rows read."""
    lines = []
    if summary["identical_repeats"]:
        repeats = summary["identical_repeats"]
        lines.append(
            f"{counted(repeats, row)} {'repeats' if repeats == 1 else 'repeat'} a rollout already read "
            "or stored (identical, not imported again)"
        )
    if summary["quarantined"]:
        lines.append(
            f"{counted(summary['quarantined'], row)} quarantined: "
            'rmforge sql "SELECT record_ref, field, reason FROM quarantine"'
        )
    return lines


def _rollout_import_lines(summary: dict[str, Any], path: str, db: str | None = None) -> list[str]:
    return [
        f"Imported {counted(summary['rollouts'], 'new rollout')} and {counted(summary['problems'], 'new problem')} "
        f"({counted(summary['new_steps'], 'step')}) from {counted(summary['rows_read'], 'row')} into {path}.",
        *_repeat_and_quarantine_lines(summary, "row"),
        "Next: " + next_command("rmforge annotate --annotator answer,z3_arith", db),
    ]


def _labelled_lines(summary: dict[str, Any], path: str, db: str | None = None) -> list[str]:
    lines = [
        f"Imported {counted(summary['rollouts'], 'new rollout')} ({counted(summary['new_steps'], 'step')}) "
        f"with {counted(summary['human_step_labels'], 'human step label')} and "
        f"{counted(summary['human_outcome_labels'], 'human final-answer label')} "
        f"from {counted(summary['rows_read'], 'record')} into {path}.",
        *_repeat_and_quarantine_lines(summary, "record"),
    ]
    lines.append(
        f"Next: {next_command('rmforge annotate --annotator answer,z3_arith', db)}, "
        f"then {next_command('rmforge curate', db)}"
    )
    return lines


@import_app.command("rollouts")
def import_rollouts(
    file: Path = typer.Argument(..., help="JSONL or Parquet: problem_id, question, gold_answer, response[, model]."),
    db: str | None = DbOption,
    json_output: bool = JsonOption,
) -> None:
    """Import rollouts from JSONL/Parquet and split them into steps."""
    from rmforge import api

    result = api.import_rollouts(file, db=db)
    report(result.summary, json_output, _rollout_import_lines(result.summary, result.db, given_db(db)))


@import_app.command("processbench")
def import_processbench(
    file: Path = typer.Argument(..., help="ProcessBench JSON/JSONL: id, generator, problem, steps, label."),
    gold: Path | None = typer.Option(
        None, "--gold", help="JSON {id: gold answer} (default: FILE_gold_answers.json beside it)."
    ),
    db: str | None = DbOption,
    json_output: bool = JsonOption,
) -> None:
    """Import ProcessBench solutions: exact steps, and the human first-error label as annotator `human`."""
    from rmforge.api import running_flows
    from rmforge.checks import input_file, records_file, refuse_if_nothing_imported, writable_store

    source = records_file(file)
    gold_path = input_file(gold, "a JSON object of gold answers") if gold else None
    path = writable_store(db)
    with running_flows():
        from rmforge.flows.import_labelled import import_labelled

        summary = import_labelled(source, path, "processbench", gold_path)
    refuse_if_nothing_imported(summary, file, "records")
    report(summary, json_output, _labelled_lines(summary, path, given_db(db)))


class NeutralRating(str, Enum):
    correct = "correct"
    incorrect = "incorrect"
    unknown = "unknown"


@import_app.command("prm800k")
def import_prm800k(
    file: Path = typer.Argument(..., help="PRM800K-style JSONL (question, label.steps[].completions[].rating)."),
    neutral: NeutralRating = typer.Option(NeutralRating.correct, help="Verdict for a neutral (0) rating."),
    db: str | None = DbOption,
    json_output: bool = JsonOption,
) -> None:
    """Import PRM800K-style rated solutions: the chosen step per turn, ratings as annotator `human`."""
    from rmforge.api import running_flows
    from rmforge.checks import records_file, refuse_if_nothing_imported, writable_store

    source = records_file(file)
    path = writable_store(db)
    with running_flows():
        from rmforge.flows.import_labelled import import_labelled

        summary = import_labelled(source, path, "prm800k", None, neutral.value)
    refuse_if_nothing_imported(summary, file, "records")
    report(summary, json_output, _labelled_lines(summary, path, given_db(db)))
