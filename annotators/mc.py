"""Monte Carlo step estimation (Math-Shepherd).

For every step prefix, sample k continuations with the completer and grade them
against the gold answer. The soft label is the fraction of graded continuations
that reach it; the hard label is correct when any does. The last prefix is the
whole rollout, so its value is the rollout's own outcome and costs no sampling.
A prefix none of whose continuations could be graded (undecidable answers, a
prefix too long for the completer's context) is `unknown`, never a failure.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

from annotators.base import AnnotationInput, AnnotationOutput, Evidence, LLMAnnotator
from annotators.completions import CompletionOptions, Estimate, PrefixQuery, estimate_prefixes, outcome_of


class MonteCarloAnnotator(LLMAnnotator):
    name: ClassVar[str] = "mc"
    version: ClassVar[str] = "2"
    evidence: ClassVar[Evidence] = Evidence(confirms_steps=True, refutes_steps=True, score="probability")
    Config: ClassVar[type[CompletionOptions]] = CompletionOptions

    def estimates(self, items: Sequence[AnnotationInput]) -> dict[tuple[str, int], Estimate]:
        """An estimate for every non-final step prefix of every gradable item, in one engine call."""
        gradable = [item for item in items if item.problem.gold_answer is not None and item.steps]
        queries = [PrefixQuery(item, i) for item in gradable for i in range(len(item.steps) - 1)]
        found = estimate_prefixes(self.load_generator(), queries, self.config) if queries else []
        return {(q.item.rollout.rollout_id, q.step_index): e for q, e in zip(queries, found, strict=True)}

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        estimates = self.estimates(items)
        output = AnnotationOutput()
        for item in items:
            rid = item.rollout.rollout_id
            if item.problem.gold_answer is None:
                output.step_labels.extend(
                    self.step_label(item, i, "unknown", run_id, reason="no gold answer") for i in range(len(item.steps))
                )
                output.costs.append(self.cost(item, 0, run_id))
                continue
            for i in range(len(item.steps) - 1):
                found = estimates[(rid, i)]
                if found.value is None:
                    output.step_labels.append(self.step_label(item, i, "unknown", run_id, reason=found.reason))
                    continue
                output.step_labels.append(
                    self.step_label(
                        item, i, "correct" if found.successes else "incorrect", run_id, score=found.value,
                        reason=f"{found.successes}/{found.graded} graded completions reach the gold answer",
                    )
                )
            if item.steps:
                output.step_labels.append(self.final_step_label(item, run_id))
            spent = sum(estimates[(rid, i)].sampled for i in range(len(item.steps) - 1))
            output.costs.append(self.cost(item, spent, run_id))
        return output

    def final_step_label(self, item: AnnotationInput, run_id: str):
        grade = outcome_of(item)
        last = len(item.steps) - 1
        if grade.verdict == "unknown":
            return self.step_label(item, last, "unknown", run_id, reason=f"final step: outcome unknown ({grade.reason})")
        value = 1.0 if grade.verdict == "correct" else 0.0
        return self.step_label(item, last, grade.verdict, run_id, score=value,
                               reason=f"final step: the rollout's own outcome ({grade.reason})")
