"""Monte Carlo step estimation (Math-Shepherd).

For every step prefix, sample k continuations with the completer and grade them
against the gold answer. The soft label is the fraction that reach it; the hard
label is correct when any does. The last prefix is the whole rollout, so its
value is the rollout's own outcome and costs no sampling.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

from annotators.base import AnnotationInput, AnnotationOutput, Evidence, LLMAnnotator
from annotators.completions import CompletionOptions, PrefixQuery, outcome_of, success_counts


class MonteCarloAnnotator(LLMAnnotator):
    name: ClassVar[str] = "mc"
    version: ClassVar[str] = "1"
    evidence: ClassVar[Evidence] = Evidence(confirms_steps=True, refutes_steps=True, score="probability")
    Config: ClassVar[type[CompletionOptions]] = CompletionOptions

    def step_values(self, items: Sequence[AnnotationInput]) -> dict[tuple[str, int], float]:
        """MC value of every step prefix of every gradable item, from one engine call."""
        gradable = [item for item in items if item.problem.gold_answer is not None and item.steps]
        queries = [PrefixQuery(item, i) for item in gradable for i in range(len(item.steps) - 1)]
        counts = success_counts(self.load_generator(), queries, self.config) if queries else []
        values = {(q.item.rollout.rollout_id, q.step_index): ok / total for q, (ok, total) in zip(queries, counts, strict=True)}
        for item in gradable:
            last = (item.rollout.rollout_id, len(item.steps) - 1)
            values[last] = 1.0 if outcome_of(item) == "correct" else 0.0
        return values

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        values = self.step_values(items)
        output = AnnotationOutput()
        for item in items:
            rid = item.rollout.rollout_id
            for i in range(len(item.steps)):
                value = values.get((rid, i))
                if value is None:
                    output.step_labels.append(self.step_label(item, i, "unknown", run_id, reason="no gold answer"))
                    continue
                verdict = "correct" if value > 0 else "incorrect"
                reason = f"{round(value * self.config.k)}/{self.config.k} completions reach the gold answer"
                if i == len(item.steps) - 1:
                    reason = "final step: the rollout's own outcome"
                output.step_labels.append(self.step_label(item, i, verdict, run_id, score=value, reason=reason))
            spent = self.config.k * max(len(item.steps) - 1, 0) if (rid, 0) in values else 0
            output.costs.append(self.cost(item, spent, run_id))
        return output
