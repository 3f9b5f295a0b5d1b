"""Monte Carlo step estimation (Math-Shepherd), with a power test on its refutations.

For every step prefix, sample k continuations with the completer and grade them
against the gold answer. The soft label is the fraction of graded continuations
that reach it; the hard label is correct when any does. The last prefix is the
whole rollout, so its value is the rollout's own outcome and costs no sampling; when
that outcome is correct the last step's `correct` rests only on it ("it reaches the
gold", Math-Shepherd's good prefix, not evidence that the step is right) and is marked
`outcome_implied`.

A prefix none of whose graded continuations succeeds is `incorrect` only when that is
evidence (annotators/completions.py, `judge_failed_prefixes`): the completer reached the
gold on this problem somewhere (an earlier prefix, its own rollouts of the problem, an
empty-prefix probe), and E[(1 - p)^k] <= `significance` for its measured rate p from the
question; otherwise `unknown` with the reason. A prefix that a later prefix of the same rollout
is seen to continue to the gold (a continuation of the later one, or the rollout itself,
reaches it) leads there too: it is never refuted, whatever its own samples. This trades
recall for precision where a completer recovers from wrong steps (bench/reports/mc_power.md).
A prefix none of whose continuations could be graded (undecidable answers, a prefix too long
for the completer's context) is `unknown`, never a failure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

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
from rmforge.schemas.records import StepLabel


class MonteCarloAnnotator(LLMAnnotator):
    name: ClassVar[str] = "mc"
    version: ClassVar[str] = "3"
    evidence: ClassVar[Evidence] = Evidence(confirms_steps=True, refutes_steps=True, score="probability")
    Config: ClassVar[type[CompletionOptions]] = CompletionOptions
    config: CompletionOptions
    reads_siblings: ClassVar[bool] = True  # the completer's own rollouts of a problem measure its success rate

    def estimates(self, items: Sequence[AnnotationInput]) -> dict[tuple[str, int], Estimate]:
        """An estimate for every non-final step prefix of every gradable item, in one engine call."""
        gradable = [item for item in items if item.problem.gold_answer is not None and item.steps]
        queries = [PrefixQuery(item, i) for item in gradable for i in range(len(item.steps) - 1)]
        found = estimate_prefixes(self.load_generator(), queries, self.config) if queries else []
        return {(q.item.rollout.rollout_id, q.step_index): e for q, e in zip(queries, found, strict=True)}

    @staticmethod
    def last_reaching_prefix(item: AnnotationInput, estimates: dict[tuple[str, int], Estimate]) -> int:
        """The last step whose prefix is seen to reach the gold (-1: none): a continuation of it
        did, or the rollout itself does (its last prefix)."""
        if outcome_of(item).verdict == "correct":
            return len(item.steps) - 1
        reached = [i for i in range(len(item.steps) - 1) if estimates[(item.rollout.rollout_id, i)].successes]
        return max(reached, default=-1)

    def failed_prefixes(
        self, items: Sequence[AnnotationInput], estimates: dict[tuple[str, int], Estimate]
    ) -> Iterator[FailedPrefix]:
        """Every estimated prefix with graded continuations and no success, in step order, except
        those a later prefix of the same rollout shows to lead to the gold (they are not refuted)."""
        for item in items:
            if (item.rollout.rollout_id, 0) not in estimates:
                continue  # no gold, or a single step: nothing was estimated
            last_reaching = self.last_reaching_prefix(item, estimates)
            for i in range(last_reaching + 1, len(item.steps) - 1):
                found = estimates[(item.rollout.rollout_id, i)]
                if found.value is not None and found.successes == 0:
                    yield FailedPrefix(item, i, found, reached_before=last_reaching >= 0)

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        estimates = self.estimates(items)
        failed = list(self.failed_prefixes(items, estimates))
        failed_keys = {(f.item.rollout.rollout_id, f.step_index) for f in failed}
        judged = (
            judge_failed_prefixes(self.load_generator(), failed, self.config, self.model)
            if failed
            else FailedPrefixVerdicts({}, {})
        )
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
                elif found.successes:
                    output.step_labels.append(
                        self.step_label(
                            item,
                            i,
                            "correct",
                            run_id,
                            score=found.value,
                            reason=f"{found.successes}/{found.graded} graded completions reach the gold answer",
                        )
                    )
                elif (rid, i) in failed_keys:
                    verdict, reason = judged.verdicts[(rid, i)]
                    output.step_labels.append(
                        self.step_label(item, i, verdict, run_id, score=found.value, reason=reason)
                    )
                else:
                    output.step_labels.append(
                        self.step_label(
                            item,
                            i,
                            "unknown",
                            run_id,
                            score=found.value,
                            reason=f"0/{found.graded} graded completions reach the gold answer, but a later prefix of "
                            "this rollout does: the step is not refuted",
                        )
                    )
            if item.steps:
                output.step_labels.append(self.final_step_label(item, run_id))
            spent = sum(estimates[(rid, i)].sampled for i in range(len(item.steps) - 1))
            probes = judged.spent.get(rid, 0)
            output.costs.append(self.cost(item, spent + probes, run_id))
        return output

    def final_step_label(self, item: AnnotationInput, run_id: str) -> StepLabel:
        grade = outcome_of(item)
        last = len(item.steps) - 1
        if grade.verdict == "unknown":
            return self.step_label(
                item, last, "unknown", run_id, reason=f"final step: outcome unknown ({grade.reason})"
            )
        if grade.verdict == "correct":
            return self.step_label(
                item,
                last,
                "correct",
                run_id,
                score=1.0,
                outcome_implied=True,
                reason=f"final step: only the rollout's own outcome reaches the gold ({grade.reason})",
            )
        return self.step_label(
            item,
            last,
            "incorrect",
            run_id,
            score=0.0,
            reason=f"final step: the rollout's own outcome is wrong ({grade.reason})",
        )
