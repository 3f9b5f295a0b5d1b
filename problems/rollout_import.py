"""Rollouts from imported records (`rmforge import rollouts`): each row a problem, a response and
optionally its steps; repeats of a rollout_id or problem_id must agree with the first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rmforge.problems.records import domain_field, gold_field, parse_rows, steps_field, text_field, type_name
from rmforge.schemas.records import Problem, QuarantineRecord, Rollout, Step, stable_hash


@dataclass
class RolloutImport:
    problems: list[Problem] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)
    # Steps given by the file (kept exactly as given); other rollouts are split later.
    steps: list[Step] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    # Rows that repeat an earlier row of the same rollout_id exactly: read, not imported twice.
    identical_repeats: int = 0
    # rollout_id -> the number of the record it was read from, for later checks to name it.
    record_numbers: dict[str, int] = field(default_factory=dict)


def step_texts_by_rollout(steps: Sequence[Step]) -> dict[str, list[str]]:
    """rollout_id -> its step texts in order."""
    texts: dict[str, list[str]] = {}
    for step in sorted(steps, key=lambda s: (s.rollout_id, s.step_index)):
        texts.setdefault(step.rollout_id, []).append(step.text)
    return texts


def rollout_mismatch(
    known: Rollout, known_steps: list[str] | None, incoming: Rollout, incoming_steps: list[str] | None
) -> str | None:
    """The field in which two records of one rollout_id disagree, if any. Steps count only where
    both records give them: steps split from the same response are the same."""
    for name in ("response", "problem_id", "model"):
        if getattr(known, name) != getattr(incoming, name):
            return name
    if known_steps is not None and incoming_steps is not None and known_steps != incoming_steps:
        return "steps"
    return None


def problem_mismatch(known: Problem, incoming: Problem) -> str | None:
    """The field in which two records of one problem_id disagree, if any."""
    if known.question.strip() != incoming.question.strip():
        return "question"
    if (known.gold_answer or "").strip() != (incoming.gold_answer or "").strip():
        return "gold_answer"
    return None


class SeenRollouts:
    """The first record of each rollout_id in one read of rows. A later record of an id must
    repeat it exactly (then it is counted, not imported again) or is refused: storing both
    would merge them: the later response over a mix of both records' steps."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[int, Rollout, list[str] | None, Any]] = {}
        self.identical_repeats = 0

    def is_repeat(self, rollout: Rollout, steps: list[Step] | None, labels: Any = None) -> bool:
        """True for an exact repeat of an accepted record; ValueError naming it for a different one.

        labels: what else a record carries that a repeat must match (human verdicts).
        """
        known = self._first.get(rollout.rollout_id)
        if known is None:
            return False
        number, first, first_steps, first_labels = known
        mismatch = rollout_mismatch(first, first_steps, rollout, _texts(steps)) or (
            "label" if labels != first_labels else None
        )
        if mismatch:
            raise ValueError(f"rollout_id: {rollout.rollout_id!r} repeats #{number} with a different {mismatch}")
        self.identical_repeats += 1
        return True

    def accept(self, number: int, rollout: Rollout, steps: list[Step] | None, labels: Any = None) -> None:
        self._first[rollout.rollout_id] = (number, rollout, _texts(steps), labels)

    def record_numbers(self) -> dict[str, int]:
        return {rollout_id: first[0] for rollout_id, first in self._first.items()}


def _texts(steps: list[Step] | None) -> list[str] | None:
    return None if steps is None else [step.text for step in steps]


def rollout_from_row(row: dict[str, Any], run_id: str) -> tuple[Problem, Rollout, list[Step] | None]:
    """One imported row -> its problem, rollout and given steps (ValueError names the field)."""
    steps = steps_field(row)
    response = text_field(row, "response", required=steps is None)
    if response is None:  # ProcessBench / PRM800K style: the steps are the response
        response = "\n\n".join(steps or [])
    num_tokens = row.get("num_tokens")
    if num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(num_tokens, int)):
        raise ValueError(f"num_tokens: expected an integer, got {type_name(num_tokens)}")
    problem = Problem(
        problem_id=text_field(row, "problem_id", required=True),
        question=text_field(row, "question", required=True),
        gold_answer=gold_field(row),
        source=text_field(row, "source") or "import",
        domain=domain_field(row),
    )
    model = text_field(row, "model") or "unknown"
    rollout = Rollout(
        rollout_id=text_field(row, "rollout_id") or stable_hash("import", problem.problem_id, model, response),
        problem_id=problem.problem_id,
        response=response,
        model=model,
        generator="import",
        finish_reason=text_field(row, "finish_reason"),
        num_tokens=num_tokens,
        run_id=run_id,
    )
    given = None
    if steps is not None:
        given = [Step(rollout_id=rollout.rollout_id, step_index=i, text=t) for i, t in enumerate(steps)]
    return problem, rollout, given


def parse_rollout_rows(rows: Sequence[Any], source: str, run_id: str) -> RolloutImport:
    """Validate imported rows; bad ones are quarantined with the field at fault.

    A problem_id repeated with another question or gold answer is refused: its rollout
    would be graded against the wrong problem.
    """
    seen_problems: dict[str, Problem] = {}
    seen_rollouts = SeenRollouts()
    given_steps: list[Step] = []

    def parse(row: dict[str, Any], number: int) -> Rollout | None:
        problem, rollout, steps = rollout_from_row(row, run_id)
        if seen_rollouts.is_repeat(rollout, steps):
            return None
        known = seen_problems.setdefault(problem.problem_id, problem)
        mismatch = problem_mismatch(known, problem)
        if mismatch:
            raise ValueError(f"{mismatch}: differs from an earlier row with problem_id {problem.problem_id!r}")
        seen_rollouts.accept(number, rollout, steps)
        given_steps.extend(steps or [])
        return rollout

    rollouts, quarantine = parse_rows(rows, source, run_id, parse)
    return RolloutImport(
        problems=list(seen_problems.values()),
        rollouts=rollouts,
        steps=given_steps,
        quarantine=quarantine,
        identical_repeats=seen_rollouts.identical_repeats,
        record_numbers=seen_rollouts.record_numbers(),
    )
