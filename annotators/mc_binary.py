"""OmegaPRM-style binary search for the first wrong step.

A prefix is good when any of k continuations reaches the gold answer. A rollout
whose own answer is correct has only good prefixes (it is itself a successful
continuation of each) and costs nothing. For a wrong rollout the last prefix is
bad, so a binary search over prefixes finds the first bad one in about
log2(steps) queries instead of one per step. All rollouts of a batch advance one
search round at a time, each round a single engine call.

A prefix is good as soon as one continuation succeeds, so each query first
samples `first_wave` continuations and only samples the rest of the k when none
of those succeeded: good prefixes usually cost 1, bad ones always cost k.

Labels: steps before the first error are correct, the first error is incorrect,
later steps get no label (as in OmegaPRM).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

from pydantic import Field

from annotators.base import AnnotationInput, AnnotationOutput, Evidence, LLMAnnotator
from annotators.completions import CompletionOptions, PrefixQuery, outcome_of, success_counts


class BinarySearchOptions(CompletionOptions):
    first_wave: int = Field(default=1, ge=1, description="Continuations tried before the rest of k.")


class BinarySearchMCAnnotator(LLMAnnotator):
    name: ClassVar[str] = "mc_binary"
    version: ClassVar[str] = "1"
    evidence: ClassVar[Evidence] = Evidence(confirms_steps=True, refutes_steps=True, score="probability")
    Config: ClassVar[type[BinarySearchOptions]] = BinarySearchOptions

    def first_errors(
        self, items: Sequence[AnnotationInput]
    ) -> tuple[dict[str, int], dict[str, dict[int, float]], dict[str, int]]:
        """First bad step per wrong rollout, observed prefix values, and completions spent."""
        values: dict[str, dict[int, float]] = {i.rollout.rollout_id: {} for i in items}
        spent = {i.rollout.rollout_id: 0 for i in items}
        # search bounds per rollout: the first error lies in [lo, hi]; hi is known bad
        bounds = {
            item.rollout.rollout_id: [0, len(item.steps) - 1]
            for item in items
            if item.steps and item.problem.gold_answer is not None and outcome_of(item) == "incorrect"
        }
        by_id = {item.rollout.rollout_id: item for item in items}
        for rid, (_, hi) in bounds.items():
            values[rid][hi] = 0.0
        while active := [rid for rid, (lo, hi) in bounds.items() if lo < hi]:
            queries = [PrefixQuery(by_id[rid], (bounds[rid][0] + bounds[rid][1]) // 2) for rid in active]
            # The engine starts only when some rollout needs probing (load_generator caches it).
            for query, (ok, total) in zip(queries, self.good_prefix_counts(queries), strict=True):
                rid, mid = query.item.rollout.rollout_id, query.step_index
                values[rid][mid] = ok / total
                spent[rid] += total
                if ok:
                    bounds[rid][0] = mid + 1
                else:
                    bounds[rid][1] = mid
        return {rid: lo for rid, (lo, _) in bounds.items()}, values, spent

    def good_prefix_counts(self, queries: list[PrefixQuery]) -> list[tuple[int, int]]:
        """(successes, samples) per query, sampling the rest of k only where the first wave failed."""
        generator = self.load_generator()
        first = min(self.config.first_wave, self.config.k)
        counts = success_counts(generator, queries, self.config, n=first)
        rest = self.config.k - first
        retry = [i for i, (ok, _) in enumerate(counts) if ok == 0 and rest > 0]
        more = success_counts(generator, [queries[i] for i in retry], self.config, n=rest)
        for i, (ok, total) in zip(retry, more, strict=True):
            counts[i] = (ok, counts[i][1] + total)
        return counts

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        first_error, values, spent = self.first_errors(items)
        output = AnnotationOutput()
        for item in items:
            rid = item.rollout.rollout_id
            output.costs.append(self.cost(item, spent[rid], run_id))
            if item.problem.gold_answer is None:
                output.step_labels.extend(
                    self.step_label(item, i, "unknown", run_id, reason="no gold answer")
                    for i in range(len(item.steps))
                )
                continue
            error = first_error.get(rid)
            last = len(item.steps) if error is None else error + 1
            for i in range(last):
                if i == error:
                    output.step_labels.append(
                        self.step_label(item, i, "incorrect", run_id, score=values[rid].get(i),
                                        reason="first step after which no completion reaches the gold answer")
                    )
                else:
                    reason = "the rollout reaches the gold answer" if error is None else "before the first error"
                    output.step_labels.append(
                        self.step_label(item, i, "correct", run_id, score=values[rid].get(i), reason=reason)
                    )
        return output
