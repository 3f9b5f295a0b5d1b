"""Completions from step prefixes, shared by the Monte Carlo annotators.

A prefix query asks: starting from the first i+1 steps of a rollout, how many of
k sampled continuations reach the gold answer? Continuations that cannot be graded
(an undecidable answer, a prefix longer than the context) are left out of the
estimate, and an estimate with none graded is unknown, never a failure. Every query of a batch goes to
the engine in one call, so vLLM schedules them together and its prefix cache
shares the common prompt and steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field

from verifiers.answers import GradeResult, grade_response
from annotators.base import AnnotationInput
from generators.base import PROMPT_TOO_LONG, Completion, Generator
from generators.prompts import solution_request
from schemas.config import GeneratorConfig, SamplingConfig


class CompletionOptions(BaseModel):
    """Options every Monte Carlo annotator shares."""

    model_config = ConfigDict(extra="forbid")

    generator: GeneratorConfig | None = Field(
        default=None, description="Completer model; None: the pipeline's generator."
    )
    k: int = Field(default=4, ge=1, le=256, description="Completions per prefix.")
    temperature: float = Field(default=0.8, ge=0.0, le=5.0)
    max_tokens: int = Field(default=256, ge=1, le=32768)
    seed: int = 0

    def sampling(self, n: int | None = None, round_index: int = 0) -> SamplingConfig:
        """Sampling for one round; a later round (a retry) draws with a new seed, so on a
        GPU or a server it does not replay the samples that already failed."""
        return SamplingConfig(
            n=n or self.k, temperature=self.temperature, max_tokens=self.max_tokens,
            seed=self.seed + round_index,
        )


@dataclass(frozen=True)
class PrefixQuery:
    item: AnnotationInput
    step_index: int  # the prefix holds steps 0..step_index; -1 means no step at all


def prefix_text(item: AnnotationInput, step_index: int) -> str:
    """The response up to the end of step `step_index`, with its original separators."""
    if step_index < 0:
        return ""
    response, end = item.rollout.response, 0
    for step in item.steps[: step_index + 1]:
        found = response.find(step, end)
        if found < 0:  # steps were normalised: fall back to joining them
            return "\n".join(item.steps[: step_index + 1]) + "\n"
        end = found + len(step)
    return response[:end] + "\n"


@dataclass(frozen=True)
class Estimate:
    """How many sampled continuations of a prefix reach the gold answer.

    Only graded continuations count: one whose answer the checker cannot decide, or a
    prefix the model cannot continue (its prompt overflows the context), is no failure.
    """

    successes: int
    graded: int
    sampled: int
    reason: str | None = None  # why no continuation could be graded

    @property
    def value(self) -> float | None:
        return self.successes / self.graded if self.graded else None

    def plus(self, other: "Estimate") -> "Estimate":
        return Estimate(
            self.successes + other.successes,
            self.graded + other.graded,
            self.sampled + other.sampled,
            other.reason if self.graded + other.graded == 0 else None,
        )


def estimate(query: PrefixQuery, prefix: str, completions: Sequence[Completion]) -> Estimate:
    successes = graded = 0
    why: set[str] = set()
    for completion in completions:
        if completion.finish_reason == PROMPT_TOO_LONG:
            why.add("the prefix does not fit the completer's context")
            continue
        grade = grade_response(
            prefix + completion.text,
            query.item.problem.gold_answer,
            finish_reason=completion.finish_reason,
            domain=query.item.problem.domain,
        )
        if grade.verdict == "unknown":
            why.add(f"continuation not gradable: {grade.reason}")
            continue
        graded += 1
        successes += grade.verdict == "correct"
    reason = None if graded else ("; ".join(sorted(why)) or "no continuation sampled")
    return Estimate(successes, graded, len(completions), reason)


def estimate_prefixes(
    generator: Generator,
    queries: Sequence[PrefixQuery],
    options: CompletionOptions,
    n: int | None = None,
    round_index: int = 0,
) -> list[Estimate]:
    """One estimate per query from n (default k) continuations, all in one engine call."""
    if not queries:
        return []
    prefixes = [prefix_text(q.item, q.step_index) for q in queries]
    requests = [
        solution_request(q.item.problem.question, q.item.problem.domain, assistant_prefix=prefix)
        for q, prefix in zip(queries, prefixes, strict=True)
    ]
    outputs = generator.generate(requests, options.sampling(n, round_index))
    return [
        estimate(query, prefix, completions)
        for query, prefix, completions in zip(queries, prefixes, outputs, strict=True)
    ]


def outcome_of(item: AnnotationInput) -> GradeResult:
    """The rollout's own graded outcome: the free sample from its last prefix."""
    return grade_response(
        item.rollout.response,
        item.problem.gold_answer,
        finish_reason=item.rollout.finish_reason,
        domain=item.problem.domain,
    )
