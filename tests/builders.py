"""Tiny record builders shared by the tests."""

from __future__ import annotations

import json

from rmforge.annotators.base import AnnotationInput
from rmforge.schemas.records import Problem, Rollout, stable_hash


def make_problem(
    question: str = "Tom has 3 apples and buys 4 more. How many apples does he have?",
    gold_answer: str | None = "7",
    *,
    domain: str = "math",
    metadata: dict | None = None,
) -> Problem:
    return Problem(
        problem_id=Problem.make_id(question, gold_answer),
        question=question,
        gold_answer=gold_answer,
        source="test",
        domain=domain,
        metadata=json.dumps(metadata or {}),
    )


def make_rollout(problem: Problem, response: str, *, finish_reason: str | None = "stop", index: int = 0) -> Rollout:
    return Rollout(
        rollout_id=stable_hash("test-rollout", problem.problem_id, response, index),
        problem_id=problem.problem_id,
        response=response,
        model="test",
        generator="test",
        sample_index=index,
        finish_reason=finish_reason,
        run_id="test-run",
    )


def make_item(
    steps: list[str],
    *,
    question: str = "Tom has 3 apples and buys 4 more. How many apples does he have?",
    gold_answer: str | None = "7",
    finish_reason: str | None = "stop",
    domain: str = "math",
    metadata: dict | None = None,
    index: int = 0,
) -> AnnotationInput:
    problem = make_problem(question, gold_answer, domain=domain, metadata=metadata)
    rollout = make_rollout(problem, "\n".join(steps), finish_reason=finish_reason, index=index)
    return AnnotationInput(problem=problem, rollout=rollout, steps=steps)
