"""The rows of each export dataset (schemas/exports.py), in the standard or the conversational format,
and their counts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, get_args

import pyarrow as pa
import pyarrow.compute as pc

from rmforge.annotators import REGISTRY, annotator_class
from rmforge.annotators.base import AUTHORITY_RANK
from rmforge.annotators.judge import build_judge_request
from rmforge.generators.prompts import SYSTEM_PROMPTS
from rmforge.schemas.config import ExportFormat, GeneratorConfig
from rmforge.schemas.exports import EXPORTS, PROMPT_END, ChatShape, ExportSpec, export_schema
from rmforge.store import Store

# Rollouts sampled by rmforge's own generators, whose prompt is `solution_request` (generators/prompts.py);
# imported rollouts ("import") come with their question only.
GENERATED_BY = frozenset(get_args(GeneratorConfig.model_fields["backend"].annotation))

Row = dict[str, Any]


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _prompt_messages(row: Row) -> list[dict[str, str]]:
    """The chat the row's rollouts answered: the generator's system prompt when every one of them was
    sampled by rmforge, then the question. The worked example the generator also sends is a
    formatting aid, not part of the task, and is left out."""
    generated = all(generator in GENERATED_BY for generator in row["prompt_generators"])
    system = [_message("system", SYSTEM_PROMPTS[row["domain"]])] if generated and row["domain"] else []
    return system + [_message("user", row["prompt"])]


def _text_row(spec: ExportSpec, row: Row) -> Row:
    # TRL joins a standard prompt and its completion as they are ("...April and May?Step 1: ..."):
    # the blank line keeps them apart.
    row = {**row, "prompt": row["prompt"] + PROMPT_END}
    if spec.step_column is not None:
        # Without whitespace around a step, a run of newlines longer than any inside a step is an
        # unambiguous separator (`step_separator`); the step splitter strips them already, imports may not.
        row[spec.step_column] = [step.strip() for step in row[spec.step_column]]
    return row


def _chat_row(chat: ChatShape, row: Row) -> Row:
    if chat.prompt == "judge_request":
        # The request the judge answered: its template over the rollout's stored steps.
        request = build_judge_request(row["prompt"], row["steps"] or [])
        prompt = [m.model_dump() for m in request.messages]
    else:
        prompt = _prompt_messages(row)
    return {
        **row,
        "prompt": prompt,
        **{column: [_message("assistant", row[source])] for column, source in chat.replies},
    }


def _shape(spec: ExportSpec, style: ExportFormat) -> Callable[[Row], Row]:
    """The function making a row of `spec`'s columns in format `style` from a row its SQL selected."""
    chat = spec.chat
    if style == "conversational" and chat is not None:
        return lambda row: _chat_row(chat, row)
    return lambda row: _text_row(spec, row)


def outcome_annotators(store: Store) -> dict[str, int]:
    """{annotator: authority rank} of the stored annotators that declare outcome labels."""
    names = [row[0] for row in store.execute("SELECT DISTINCT annotator FROM outcome_labels ORDER BY 1")]
    ranks = {}
    for name in names:
        if name in REGISTRY and (evidence := annotator_class(name).evidence).labels_outcomes:
            ranks[name] = AUTHORITY_RANK[evidence.authority]
    return ranks


# Each rollout's decided outcome verdict (rollout_id, verdict), from the outcome consensus that
# curation built (tasks/consensus.py).
OUTCOME_VERDICT_SQL = "SELECT rollout_id, verdict FROM outcome_consensus WHERE verdict IN ('correct', 'incorrect')"


def fetch_dataset(store: Store, name: str, style: ExportFormat = "standard") -> pa.Table:
    """The dataset in format `style`, as a table of exactly its export schema (typed even when empty)."""
    spec = EXPORTS[name]
    sql = spec.sql.replace("{outcome}", OUTCOME_VERDICT_SQL)
    shape = _shape(spec, style)
    return pa.Table.from_pylist([shape(row) for row in store.rows(sql)], schema=export_schema(name, style))


def step_separator(table: pa.Table, column: str = "completions") -> str:
    """The separator to join the steps of `column` with: one newline more than the longest run inside any step.

    TRL's PRMTrainer ends each step with `step_separator` (default "\n") and a PRM scores a new solution
    split on it, so no step may hold it; "\n" itself when no step holds a newline.
    """
    runs = [
        len(run) for steps in table.column(column).to_pylist() for step in steps for run in re.findall(r"\n+", step)
    ]
    return "\n" * (max(runs, default=0) + 1)


def dataset_stats(name: str, table: pa.Table) -> dict[str, object]:
    """Counts and balance of one dataset, as exported."""
    stats: dict[str, object] = {"rows": table.num_rows}
    columns = table.column_names
    if "problem_id" in columns:
        stats["problems"] = len(pc.unique(table.column("problem_id")))
    if not table.num_rows:
        return stats
    if name == "process":
        labels = pc.list_flatten(table.column("labels"))
        steps = len(labels)
        stats["steps"] = steps
        stats["positive_step_fraction"] = round(pc.sum(labels).as_py() / steps, 4)
        stats["mean_steps_per_example"] = round(steps / table.num_rows, 2)
        last = [row[-1] for row in table.column("labels").to_pylist()]
        stats["examples_ending_in_error"] = last.count(False)
        # Only a probability estimate lies strictly between the hard labels 0.0 and 1.0.
        soft = pc.list_flatten(table.column("soft_labels"))
        stats["fractional_soft_labels"] = pc.sum(pc.and_(pc.greater(soft, 0.0), pc.less(soft, 1.0))).as_py() or 0
        stats["outcome_implied_labels"] = pc.sum(pc.list_flatten(table.column("outcome_implied"))).as_py() or 0
    if name == "preference":
        stats["mean_pairs_per_problem"] = round(table.num_rows / stats["problems"], 2)
    if name == "kto":
        stats["desirable_fraction"] = round(pc.sum(table.column("label")).as_py() / table.num_rows, 4)
    if name == "critiques":
        verdicts = pc.value_counts(table.column("verdict")).to_pylist()
        stats["verdicts"] = {v["values"]: v["counts"] for v in sorted(verdicts, key=lambda v: str(v["values"]))}
    return stats
