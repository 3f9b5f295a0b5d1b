"""Completions from step prefixes, shared by the Monte Carlo annotators.

A prefix query asks: starting from the first i+1 steps of a rollout, how many of
k sampled continuations reach the gold answer? Every query of a batch goes to
the engine in one call, so vLLM schedules them together and its prefix cache
shares the common prompt and steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field

from annotators.answer import grade_response
from annotators.base import AnnotationInput
from generators.base import Generator
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

    def sampling(self, n: int | None = None) -> SamplingConfig:
        return SamplingConfig(
            n=n or self.k, temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed
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


def success_counts(
    generator: Generator, queries: Sequence[PrefixQuery], options: CompletionOptions, n: int | None = None
) -> list[tuple[int, int]]:
    """(correct, graded) per query: how many of n (default k) continuations reach the gold answer."""
    if not queries:
        return []
    prefixes = [prefix_text(q.item, q.step_index) for q in queries]
    requests = [
        solution_request(q.item.problem.question, q.item.problem.domain, assistant_prefix=prefix)
        for q, prefix in zip(queries, prefixes, strict=True)
    ]
    outputs = generator.generate(requests, options.sampling(n))
    counts = []
    for query, prefix, completions in zip(queries, prefixes, outputs, strict=True):
        correct = 0
        for completion in completions:
            grade = grade_response(
                prefix + completion.text,
                query.item.problem.gold_answer,
                finish_reason=completion.finish_reason,
                domain=query.item.problem.domain,
            )
            correct += grade.verdict == "correct"
        counts.append((correct, len(completions)))
    return counts


def outcome_of(item: AnnotationInput) -> str:
    """The rollout's own graded outcome: the free sample from its last prefix."""
    return grade_response(
        item.rollout.response,
        item.problem.gold_answer,
        finish_reason=item.rollout.finish_reason,
        domain=item.problem.domain,
    ).verdict
