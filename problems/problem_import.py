"""Problems from imported records: GSM8K-style rows (`question`, `answer` with `#### 72`) and
FOLIO-style logic rows (`premises-FOL`, `conclusion-FOL`, `label`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rmforge.problems.records import gold_field, parse_rows, text_field
from rmforge.schemas.records import Problem, QuarantineRecord

_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)
_CALCULATOR = re.compile(r"<<[^>]*>>")


def split_gsm8k_answer(answer: str) -> tuple[str, list[str]]:
    """GSM8K answers hold the rationale, then `#### 72`: gold and reference steps."""
    match = _GSM8K_FINAL.search(answer)
    if not match:
        return answer.strip(), []
    rationale = answer[: match.start()]
    steps = [line.strip() for line in rationale.splitlines() if line.strip()]
    return match.group(1).replace(",", "").strip(), steps


@dataclass
class ImportResult:
    problems: list[Problem] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)


def problem_from_record(
    record: dict[str, Any], source: str, question_field: str = "question", answer_field: str = "answer"
) -> Problem:
    """One imported row -> Problem. Raises ValueError naming the field at fault.

    FOLIO-style records (`premises-FOL`, `conclusion-FOL`, `label`) become logic problems
    that keep their premise and conclusion formulas for the `z3_logic` annotator.
    """
    if "premises-FOL" in record or "conclusion-FOL" in record:
        return folio_problem(record, source)
    question = record.get(question_field)
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{question_field}: missing or empty question")
    gold = gold_field(record, answer_field if answer_field in record else "gold_answer")
    steps: list[str] = []
    if gold is not None:
        gold, steps = split_gsm8k_answer(gold)
        steps = [_CALCULATOR.sub("", s) for s in steps]
    given_id = record.get("problem_id") or record.get("id")
    return Problem(
        problem_id=str(given_id) if given_id else Problem.make_id(question, gold),
        question=question.strip(),
        gold_answer=gold,
        source=source,
        domain=record.get("domain", "math"),
        difficulty=record.get("difficulty") if isinstance(record.get("difficulty"), int) else None,
        reference_steps=steps,
    )


def folio_problem(record: dict[str, Any], source: str) -> Problem:
    from rmforge.problems.logic import logic_problem_from_record

    premises = record.get("premises-FOL")
    conclusion = text_field(record, "conclusion-FOL", required=True)
    if not isinstance(premises, (str, list)) or not premises:
        raise ValueError("premises-FOL: expected a list of formulas or one string, one per line")
    label = record.get("label")
    try:
        problem = logic_problem_from_record(
            premises,
            conclusion,
            label,
            source,
            premises_nl=record.get("premises"),
            conclusion_nl=text_field(record, "conclusion"),
        )
    except ValueError as exc:
        raise ValueError(
            f"label: {exc}" if label is not None and "label" in str(exc) else f"premises-FOL: {exc}"
        ) from None
    given_id = record.get("problem_id") or (
        record.get("story_id") and f"folio-{record.get('story_id')}-{record.get('example_id')}"
    )
    return problem.model_copy(update={"problem_id": str(given_id)}) if given_id else problem


def import_problem_rows(
    rows: Sequence[Any], source: str, run_id: str, question_field: str, answer_field: str
) -> ImportResult:
    problems, quarantine = parse_rows(
        rows, source, run_id, lambda row, _number: problem_from_record(row, source, question_field, answer_field)
    )
    return ImportResult(problems=problems, quarantine=quarantine)
