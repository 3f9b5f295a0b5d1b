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
"""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar, Sequence

from pydantic import Field

from annotators.base import AnnotationInput, AnnotationOutput, Evidence, LLMAnnotator
from annotators.completions import CompletionOptions, PrefixQuery, estimate_prefixes, outcome_of
from schemas.config import GeneratorConfig


class ProgressOptions(CompletionOptions):
    prover: GeneratorConfig | None = Field(
        default=None, description="Policy that estimates values; None: `generator`, else the pipeline's."
    )


class ProgressAnnotator(LLMAnnotator):
    name: ClassVar[str] = "pav"
    version: ClassVar[str] = "2"
    evidence: ClassVar[Evidence] = Evidence(confirms_steps=True, refutes_steps=True, score="advantage")
    Config: ClassVar[type[ProgressOptions]] = ProgressOptions

    @property
    def generator_config(self) -> GeneratorConfig:
        return self.config.prover or self.config.generator or self.default_generator

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        gradable = [i for i in items if i.steps and i.problem.gold_answer is not None]
        queries = [PrefixQuery(item, s) for item in gradable for s in range(-1, len(item.steps) - 1)]
        found = estimate_prefixes(self.load_generator(), queries, self.config) if queries else []
        values: dict[tuple[str, int], float | None] = {}
        why: dict[tuple[str, int], str | None] = {}
        spent: dict[str, int] = defaultdict(int)
        for q, e in zip(queries, found, strict=True):
            key = (q.item.rollout.rollout_id, q.step_index)
            values[key], why[key] = e.value, e.reason
            spent[key[0]] += e.sampled
        gradable_ids = {item.rollout.rollout_id for item in gradable}
        output = AnnotationOutput()
        for item in items:
            rid = item.rollout.rollout_id
            if rid not in gradable_ids:
                output.step_labels.extend(
                    self.step_label(item, i, "unknown", run_id, reason="no gold answer")
                    for i in range(len(item.steps))
                )
                output.costs.append(self.cost(item, 0, run_id))
                continue
            last = (rid, len(item.steps) - 1)
            grade = outcome_of(item)
            values[last] = {"correct": 1.0, "incorrect": 0.0}.get(grade.verdict)
            why[last] = f"outcome unknown: {grade.reason}"
            for i in range(len(item.steps)):
                before, after = values[(rid, i - 1)], values[(rid, i)]
                if before is None or after is None:
                    missing = why[(rid, i - 1)] if before is None else why[(rid, i)]
                    output.step_labels.append(self.step_label(item, i, "unknown", run_id, reason=missing))
                    continue
                if after > 0:
                    verdict = "correct"
                elif before > 0:
                    verdict = "incorrect"
                else:
                    verdict = "unknown"
                output.step_labels.append(
                    self.step_label(item, i, verdict, run_id, score=after - before,
                                    reason=f"V {before:.2f} -> {after:.2f}")
                )
            output.costs.append(self.cost(item, spent[rid], run_id))
        return output
