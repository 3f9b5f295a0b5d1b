"""Human-labelled solutions (`rmforge import processbench`, `rmforge import prm800k`): rollouts with
human step verdicts and, where the data has them, final-answer verdicts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rmforge.problems.records import InputFileError, gold_field, parse_rows, steps_field, text_field, type_name
from rmforge.problems.rollout_import import RolloutImport, SeenRollouts, rollout_from_row
from rmforge.schemas.records import VERDICTS, Problem, Rollout, Step, Verdict, stable_hash


@dataclass
class LabelledImport(RolloutImport):
    """Rollouts with human step verdicts (and, where the data has them, final-answer verdicts)."""

    reviewers: dict[str, str] = field(default_factory=dict)  # rollout_id -> who labelled it
    step_verdicts: dict[str, list[Verdict]] = field(default_factory=dict)  # rollout_id -> verdict per labelled step
    outcomes: dict[str, bool] = field(default_factory=dict)  # rollout_id -> final answer correct


class LabelledRecord(NamedTuple):
    """One human-labelled solution as read from a record."""

    problem: Problem
    rollout: Rollout
    steps: list[Step]
    verdicts: list[Verdict]  # one per labelled step, from the first
    final_answer_correct: bool | None  # None: the data does not say
    reviewer: str  # who labelled it


def first_error_verdicts(first_error: Any, n_steps: int, field_name: str = "label") -> list[Verdict]:
    """ProcessBench convention: steps before the earliest wrong one are correct, it is
    incorrect, later steps stay unlabelled; -1 means every step is correct."""
    if isinstance(first_error, bool) or not isinstance(first_error, int) or not -1 <= first_error < n_steps:
        raise ValueError(f"{field_name}: expected -1 or a step index below {n_steps}, got {first_error!r}")
    before: list[Verdict] = ["correct"] * (n_steps if first_error == -1 else first_error)
    return before if first_error == -1 else [*before, "incorrect"]


def verdict_option(name: str, value: str) -> Verdict:
    """An option's value as a verdict; ValueError names the option otherwise."""
    match value:
        case "correct" | "incorrect" | "unknown":
            return value
    raise ValueError(f"{name}: {value!r} is not one of {', '.join(VERDICTS)}")


def processbench_record(record: dict[str, Any], gold: dict[str, str], run_id: str) -> LabelledRecord:
    """One ProcessBench record (id, generator, problem, steps, final_answer_correct, label)."""
    record_id = text_field(record, "id", required=True)
    question = text_field(record, "problem", required=True)
    steps = steps_field(record) or []
    if not steps:
        raise ValueError("steps: missing")
    gold_answer = gold.get(record_id) if record_id in gold else gold_field(record, "gold_answer")
    row = {
        "problem_id": Problem.make_id(question, gold_answer),
        "question": question,
        "gold_answer": gold_answer,
        "steps": steps,
        "model": text_field(record, "generator") or "unknown",
        "rollout_id": record_id,
        "source": "processbench",
    }
    problem, rollout, given = rollout_from_row(row, run_id)
    verdicts = first_error_verdicts(record.get("label"), len(steps))
    final = record.get("final_answer_correct")
    if final is not None and not isinstance(final, bool):
        raise ValueError(f"final_answer_correct: expected a boolean, got {type_name(final)}")
    return LabelledRecord(problem, rollout, given or [], verdicts, final, "processbench")


# Looked up by whatever JSON value a record's rating holds.
PRM800K_RATINGS: dict[object, Verdict] = {1: "correct", -1: "incorrect"}


def prm800k_record(record: dict[str, Any], neutral: Verdict, run_id: str) -> LabelledRecord:
    """One PRM800K record: the rated step chosen at each turn, ratings 1 / 0 / -1 (0 = neutral)."""
    question_block = record.get("question")
    label_block = record.get("label")
    if not isinstance(question_block, dict) or not isinstance(label_block, dict):
        raise ValueError("question: expected PRM800K's question and label objects")
    question = text_field(question_block, "problem", required=True)
    gold_answer = gold_field(question_block, "ground_truth_answer")
    texts: list[str] = []
    verdicts: list[Verdict] = []
    for turn, step in enumerate(label_block.get("steps") or []):
        completions = step.get("completions") or []
        chosen = step.get("chosen_completion")
        pick = (
            step.get("human_completion")
            if chosen is None and step.get("human_completion")
            else (
                completions[chosen]
                if isinstance(chosen, int) and 0 <= chosen < len(completions)
                else (completions[0] if completions else None)
            )
        )
        if not isinstance(pick, dict) or not isinstance(pick.get("text"), str) or not pick["text"].strip():
            raise ValueError(f"label.steps: turn {turn} has no step text")
        rating = pick.get("rating")
        verdict = neutral if rating == 0 else PRM800K_RATINGS.get(rating)
        texts.append(pick["text"])
        if verdict is None or (verdicts and verdicts[-1] == "incorrect"):
            break  # an unrated step, or steps after the first wrong one, stay unlabelled
        verdicts.append(verdict)
    if not texts:
        raise ValueError("label.steps: no steps")
    labeler = text_field(record, "labeler") or "prm800k"
    row = {
        "problem_id": Problem.make_id(question, gold_answer),
        "question": question,
        "gold_answer": gold_answer,
        "steps": texts,
        "model": "prm800k",
        "rollout_id": stable_hash("prm800k", labeler, record.get("timestamp"), question, texts),
        "source": "prm800k",
    }
    problem, rollout, given = rollout_from_row(row, run_id)
    return LabelledRecord(problem, rollout, given or [], verdicts, None, labeler)


LABELLED_FORMATS = ("processbench", "prm800k")


def parse_labelled_rows(
    rows: Sequence[Any],
    source: str,
    run_id: str,
    fmt: str,
    *,
    gold: dict[str, str] | None = None,
    neutral: str = "correct",
) -> LabelledImport:
    """Human-labelled solutions (ProcessBench or PRM800K format) -> rollouts + human verdicts."""
    if fmt not in LABELLED_FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of {', '.join(LABELLED_FORMATS)}")
    result = LabelledImport()
    seen_problems: dict[str, Problem] = {}
    seen_rollouts = SeenRollouts()
    neutral_verdict = verdict_option("neutral", neutral)

    def parse(record: dict[str, Any], number: int) -> Rollout | None:
        if fmt == "processbench":
            read = processbench_record(record, gold or {}, run_id)
        else:
            read = prm800k_record(record, neutral_verdict, run_id)
        rollout_id = read.rollout.rollout_id
        labels = (read.verdicts, read.final_answer_correct, read.reviewer)
        if seen_rollouts.is_repeat(read.rollout, read.steps, labels):
            return None
        seen_rollouts.accept(number, read.rollout, read.steps, labels)
        seen_problems.setdefault(read.problem.problem_id, read.problem)
        result.steps.extend(read.steps)
        result.reviewers[rollout_id] = read.reviewer
        result.step_verdicts[rollout_id] = read.verdicts
        if read.final_answer_correct is not None:
            result.outcomes[rollout_id] = read.final_answer_correct
        return read.rollout

    result.rollouts, result.quarantine = parse_rows(rows, source, run_id, parse)
    result.problems = list(seen_problems.values())
    result.identical_repeats, result.record_numbers = seen_rollouts.identical_repeats, seen_rollouts.record_numbers()
    return result


def read_gold_answers(path: Path) -> dict[str, str]:
    """A JSON object mapping record id -> gold final answer (e.g. ProcessBench's GSM8K golds)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable JSON object of gold answers ({exc})") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a JSON object mapping ids to gold answers")
    try:
        golds = {str(k): gold_field(data, k) for k in data}
        return {k: gold for k, gold in golds.items() if gold is not None}
    except ValueError as exc:
        raise InputFileError(f"{path}: {exc}") from None


def sibling_gold_answers(path: Path) -> Path | None:
    """`gsm8k.json` -> `gsm8k_gold_answers.json` beside it, when present."""
    candidate = path.with_name(f"{path.stem}_gold_answers.json")
    return candidate if candidate.exists() else None
