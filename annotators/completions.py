"""Completions from step prefixes, shared by the Monte Carlo annotators.

A prefix query asks: starting from the first i+1 steps of a rollout, how many of
k sampled continuations reach the gold answer? Continuations that cannot be graded
(an undecidable answer, a prefix longer than the context) are left out of the
estimate, and an estimate with none graded is unknown, never a failure. Every query of a batch goes to
the engine in one call, so vLLM schedules them together and its prefix cache
shares the common prompt and steps; a search whose next query depends on an estimate
runs `prefix_estimate_request`s through the engine's pipelined loop instead.

A prefix none of whose k graded continuations succeeds is only a candidate `incorrect`
(`judge_failed_prefixes`): zero successes is evidence against a step only when the completer
can reach the gold answer on the problem at all, and when k failures are unlikely for a
good prefix. The completer's success rate p on the problem is measured from the empty
prefix: its own stored rollouts of the problem (same model) plus, where that could change a
verdict, one probe of `baseline_k` completions of the bare question per problem. With no
success anywhere (no earlier prefix, no rollout, no probe) the verdict is `unknown`: no
evidence against any step. Else `incorrect` only if the chance that a prefix as good as the
empty one fails all k graded continuations, E[(1 - p)^k] over the rate's uncertainty
(`chance_all_fail`), is at most `significance`; else `unknown` with the numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from rmforge.annotators.base import AnnotationInput
from rmforge.generators.base import PROMPT_TOO_LONG, Completion, GenerationRequest, Generator, PipelinedRequest
from rmforge.generators.prompts import solution_request
from rmforge.schemas.config import GeneratorConfig, SamplingConfig
from rmforge.schemas.records import Rollout, Verdict
from rmforge.verifiers.answers import GradeResult, grade_response


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
    baseline_k: int = Field(
        default=4,
        ge=0,
        le=256,
        description="Completions of the bare question (the empty prefix), sampled once per problem that has a "
        "candidate `incorrect` and only where they could change its verdict, to measure the completer's "
        "success rate p on the problem (with its stored rollouts of the problem); 0: rollouts only.",
    )
    significance: float = Field(
        default=0.05,
        gt=0.0,
        le=1.0,
        description="A prefix none of whose k graded completions reaches the gold answer is `incorrect` only "
        "when that is this unlikely for a good prefix: E[(1 - p)^k] <= significance, p the completer's "
        "success rate on the problem as measured (uniform prior); else `unknown` (too weak a completer to tell).",
    )

    def sampling(self, n: int | None = None, round_index: int = 0) -> SamplingConfig:
        """Sampling for one round; a later round (a retry) draws with a new seed, so on a
        GPU or a server it does not replay the samples that already failed."""
        return SamplingConfig(
            n=n or self.k,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
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

    def plus(self, other: Estimate) -> Estimate:
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
            question=query.item.problem.question,
        )
        if grade.verdict == "unknown":
            why.add(f"continuation not gradable: {grade.reason}")
            continue
        graded += 1
        successes += grade.verdict == "correct"
    reason = None if graded else ("; ".join(sorted(why)) or "no continuation sampled")
    return Estimate(successes, graded, len(completions), reason)


def continuation_request(query: PrefixQuery, prefix: str) -> GenerationRequest:
    return solution_request(query.item.problem.question, query.item.problem.domain, assistant_prefix=prefix)


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
    requests = [continuation_request(q, prefix) for q, prefix in zip(queries, prefixes, strict=True)]
    outputs = generator.generate(requests, options.sampling(n, round_index))
    return [
        estimate(query, prefix, completions)
        for query, prefix, completions in zip(queries, prefixes, outputs, strict=True)
    ]


def prefix_estimate_request(
    query: PrefixQuery,
    options: CompletionOptions,
    n: int,
    round_index: int,
    then: Callable[[Estimate], Iterable[PipelinedRequest]],
) -> PipelinedRequest:
    """The query's n continuations as a pipelined request: `then` gets its estimate, as
    `estimate_prefixes` would make it, and returns the requests that follow."""
    prefix = prefix_text(query.item, query.step_index)
    return PipelinedRequest(
        continuation_request(query, prefix),
        options.sampling(n, round_index),
        lambda completions: then(estimate(query, prefix, completions)),
    )


def outcome_of(item: AnnotationInput, rollout: Rollout | None = None) -> GradeResult:
    """A rollout's graded outcome (default: the item's own, the free sample from its last prefix)."""
    rollout = rollout or item.rollout
    return grade_response(
        rollout.response,
        item.problem.gold_answer,
        finish_reason=rollout.finish_reason,
        domain=item.problem.domain,
        question=item.problem.question,  # read as `answer` reads it
    )


# ------------------------------------------------------------ is a failed prefix evidence?

PROBE_ROUND = 2  # rounds 0 and 1 are the prefix samples and mc_binary's rest of k
NEVER_REACHED = "the completer never reached the gold answer on this problem: no evidence against any step"


@dataclass(frozen=True)
class FailedPrefix:
    """A prefix none of whose graded continuations reached the gold answer: a candidate `incorrect`."""

    item: AnnotationInput
    step_index: int
    found: Estimate
    reached_before: bool  # an earlier prefix of the same rollout did reach the gold answer


def chance_all_fail(rate: Estimate, n: int) -> float:
    """Probability that n continuations of a prefix as good as the empty one all fail, given the
    measured rate: the posterior predictive under a uniform prior on p, E[(1 - p)^n] with
    p ~ Beta(successes + 1, failures + 1). A lucky 2/2 is not read as p = 1: it leaves
    room for a low rate, so few measurements never make a failure look significant."""
    s, f = rate.successes, rate.graded - rate.successes
    return math.exp(math.lgamma(f + 1 + n) + math.lgamma(s + f + 2) - math.lgamma(s + f + 2 + n) - math.lgamma(f + 1))


def failed_prefix_verdict(failed: FailedPrefix, rate: Estimate, significance: float) -> tuple[Verdict, str]:
    """`incorrect` when the completer can reach the gold on the problem and failing every graded
    continuation is unlikely (<= significance) for a prefix as good as the empty one, else `unknown`."""
    if not (failed.reached_before or rate.successes):
        return "unknown", NEVER_REACHED
    chance = chance_all_fail(rate, failed.found.graded)
    numbers = (
        f"0/{failed.found.graded} graded completions reach the gold answer; the completer reaches it from the "
        f"question in {rate.successes}/{rate.graded}, so a good prefix fails all {failed.found.graded} "
        f"with probability {chance:.3f}"
    )
    if chance <= significance:
        return "incorrect", numbers
    return "unknown", f"{numbers} > {significance}: too weak a completer to tell"


def same_model_rate(failed: Sequence[FailedPrefix], model: str | None) -> Estimate:
    """How often the completer's own stored rollouts of the problem (item and siblings) reach the gold."""
    rollouts = {r.rollout_id: r for f in failed for r in (f.item.rollout, *f.item.siblings) if r.model == model}
    grades = [outcome_of(failed[0].item, r).verdict for r in rollouts.values()]
    graded = [g for g in grades if g != "unknown"]
    return Estimate(graded.count("correct"), len(graded), 0)


def needs_probe(failed: Sequence[FailedPrefix], rate: Estimate, options: CompletionOptions) -> bool:
    """Whether `baseline_k` more samples of the question, all failing or all succeeding, give different
    verdicts on a problem's failed prefixes (never when `baseline_k` is 0)."""
    if not options.baseline_k:
        return False
    worst = rate.plus(Estimate(0, options.baseline_k, 0))
    best = rate.plus(Estimate(options.baseline_k, options.baseline_k, 0))
    return any(
        failed_prefix_verdict(f, worst, options.significance)[0]
        != failed_prefix_verdict(f, best, options.significance)[0]
        for f in failed
    )


@dataclass
class FailedPrefixVerdicts:
    verdicts: dict[tuple[str, int], tuple[Verdict, str]]  # (rollout_id, step_index) -> verdict, reason
    spent: dict[str, int]  # probe completions, charged to the first rollout of each probed problem


def judge_failed_prefixes(
    generator: Generator,
    failed: Sequence[FailedPrefix],
    options: CompletionOptions,
    model: str | None,
    sampled: dict[str, Estimate] | None = None,
) -> FailedPrefixVerdicts:
    """Verdicts on candidate `incorrect` prefixes, problem by problem (`judge_problem`), with the
    empty-prefix probes all run together. `sampled`: empty-prefix estimates per problem already
    made by the caller (pav values the empty prefix), pooled into the measured rate."""
    by_problem: dict[str, list[FailedPrefix]] = defaultdict(list)
    for f in failed:
        by_problem[f.item.problem.problem_id].append(f)
    judged = FailedPrefixVerdicts({}, {})
    probes = [
        probe
        for pid in sorted(by_problem)
        for probe in judge_problem(
            by_problem[pid],
            same_model_rate(by_problem[pid], model).plus((sampled or {}).get(pid, Estimate(0, 0, 0))),
            options,
            judged,
        )
    ]
    if probes:
        generator.run_pipelined(probes)
    return judged


def judge_problem(
    failed: Sequence[FailedPrefix], rate: Estimate, options: CompletionOptions, judged: FailedPrefixVerdicts
) -> list[PipelinedRequest]:
    """Judge one problem's candidate `incorrect` prefixes into `judged`, given the completer's
    measured rate on it: at once when an empty-prefix probe could not change a verdict, else the
    probe as a pipelined request that finishes the judgement when it returns (its samples pooled
    into the rate and charged to the problem's first rollout)."""
    if not needs_probe(failed, rate, options):
        judged.verdicts.update(failed_prefix_verdicts(failed, rate, options.significance))
        return []

    def probed(probe: Estimate) -> list[PipelinedRequest]:
        rollout_id = failed[0].item.rollout.rollout_id
        judged.spent[rollout_id] = judged.spent.get(rollout_id, 0) + probe.sampled
        judged.verdicts.update(failed_prefix_verdicts(failed, rate.plus(probe), options.significance))
        return []

    # A round of its own: a seeded backend must not replay the prefixes' own samples (pav's of the empty prefix).
    query = PrefixQuery(failed[0].item, -1)
    return [prefix_estimate_request(query, options, options.baseline_k, PROBE_ROUND, probed)]


def failed_prefix_verdicts(
    failed: Sequence[FailedPrefix], rate: Estimate, significance: float
) -> dict[tuple[str, int], tuple[Verdict, str]]:
    """(rollout_id, step_index) -> verdict, reason for failed prefixes of one problem, its rate measured."""
    return {(f.item.rollout.rollout_id, f.step_index): failed_prefix_verdict(f, rate, significance) for f in failed}
