"""Process advantage (PAV, "Rewarding Progress", Setlur et al. 2024).

The reward of step i is the change in the estimated probability of reaching the
gold answer: A_i = V(steps 0..i) - V(steps 0..i-1), with V estimated by Monte
Carlo under a "prover" policy that may differ from the model that wrote the
rollout (any backend, e.g. a stronger model behind an OpenAI-compatible server).
V of the empty prefix is estimated too, so the first step gets an advantage.

The advantage is stored as the score. The verdict follows the hard MC rule on
the prover's values: incorrect when the step takes a solvable prefix to an
unsolvable one, correct when the prefix stays solvable, unknown when neither
the step nor its prefix could be completed (the prover is too weak to tell), and
unknown with the reason when a value could not be estimated (no continuation could
be graded) or the rollout's own outcome is unknown.

The last step's value is the rollout's own outcome: its `correct` (a rollout that
reaches the gold) rests only on that outcome and is marked `outcome_implied`. An
inner step whose prefix was solvable but none of whose k graded continuations
succeeds is `incorrect` only when k failures are unlikely for a good prefix
(annotators/completions.py, `judge_failed_prefixes`): E[(1 - p)^k] <= `significance`,
p the prover's measured rate from the question (its values of the empty prefix over
the batch's rollouts of the problem, its own stored rollouts of it, and a probe where
that could change the verdict); else `unknown` with the numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Evidence, LLMAnnotator
from rmforge.annotators.completions import (
    CompletionOptions,
    Estimate,
    FailedPrefix,
    FailedPrefixVerdicts,
    PrefixQuery,
    estimate_prefixes,
    judge_failed_prefixes,
    outcome_of,
)
from rmforge.schemas.config import GeneratorConfig
from rmforge.schemas.records import Verdict


class ProgressOptions(CompletionOptions):
    prover: GeneratorConfig | None = Field(
        default=None, description="Policy that estimates values; None: `generator`, else the pipeline's."
    )


class ProgressAnnotator(LLMAnnotator):
    name: ClassVar[str] = "pav"
    version: ClassVar[str] = "3"
    evidence: ClassVar[Evidence] = Evidence(confirms_steps=True, refutes_steps=True, score="advantage")
    Config: ClassVar[type[ProgressOptions]] = ProgressOptions
    config: ProgressOptions
    reads_siblings: ClassVar[bool] = True  # the prover's own rollouts of a problem measure its success rate

    @property
    def generator_config(self) -> GeneratorConfig:
        return self.config.prover or self.config.generator or self.default_generator

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        gradable = [i for i in items if i.steps and i.problem.gold_answer is not None]
        queries = [PrefixQuery(item, s) for item in gradable for s in range(-1, len(item.steps) - 1)]
        found = estimate_prefixes(self.load_generator(), queries, self.config) if queries else []
        estimates = {(q.item.rollout.rollout_id, q.step_index): e for q, e in zip(queries, found, strict=True)}
        spent: dict[str, int] = defaultdict(int)
        from_question: dict[str, Estimate] = defaultdict(lambda: Estimate(0, 0, 0))
        for q, e in zip(queries, found, strict=True):
            spent[q.item.rollout.rollout_id] += e.sampled
            if q.step_index < 0:
                from_question[q.item.problem.problem_id] = from_question[q.item.problem.problem_id].plus(e)
        failed = [
            FailedPrefix(item, i, estimates[(item.rollout.rollout_id, i)], reached_before=True)
            for item in gradable
            for i in range(len(item.steps) - 1)
            if (estimates[(item.rollout.rollout_id, i - 1)].value or 0) > 0
            and estimates[(item.rollout.rollout_id, i)].value == 0
        ]
        judged = (
            judge_failed_prefixes(self.load_generator(), failed, self.config, self.model, from_question)
            if failed
            else FailedPrefixVerdicts({}, {})
        )
        gradable_ids = {item.rollout.rollout_id for item in gradable}
        output = AnnotationOutput()
        for item in items:
            rid = item.rollout.rollout_id
            if rid not in gradable_ids:
                output.step_labels.extend(
                    self.step_label(item, i, "unknown", run_id, reason="no gold answer") for i in range(len(item.steps))
                )
                output.costs.append(self.cost(item, 0, run_id))
                continue
            last = len(item.steps) - 1
            values = {i: estimates[(rid, i)].value for i in range(-1, last)}
            why = {i: estimates[(rid, i)].reason for i in range(-1, last)}
            grade = outcome_of(item)
            values[last] = {"correct": 1.0, "incorrect": 0.0}.get(grade.verdict)
            why[last] = f"outcome unknown: {grade.reason}"
            for i in range(len(item.steps)):
                before, after = values[i - 1], values[i]
                if before is None or after is None:
                    missing = why[i - 1] if before is None else why[i]
                    output.step_labels.append(self.step_label(item, i, "unknown", run_id, reason=missing))
                    continue
                reason = f"V {before:.2f} -> {after:.2f}"
                verdict: Verdict
                if after > 0:
                    verdict = "correct"
                elif before == 0:
                    verdict, reason = "unknown", f"{reason}: the prover reaches the gold from neither"
                elif i == last:
                    verdict = "incorrect"  # the rollout's own answer is wrong
                else:
                    verdict, why_not = judged.verdicts[(rid, i)]
                    reason = f"{reason}: {why_not}"
                outcome_implied = i == last and verdict == "correct"
                if outcome_implied:
                    reason = f"{reason}: only the rollout's own outcome reaches the gold"
                output.step_labels.append(
                    self.step_label(
                        item, i, verdict, run_id, score=after - before, reason=reason, outcome_implied=outcome_implied
                    )
                )
            output.costs.append(self.cost(item, spent[rid] + judged.spent.get(rid, 0), run_id))
        return output
