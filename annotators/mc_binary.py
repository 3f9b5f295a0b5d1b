"""OmegaPRM-style binary search for the first wrong step.

A prefix is good when any of k continuations reaches the gold answer. A rollout
whose own answer is correct has only good prefixes (it is itself a successful
continuation of each) and costs nothing. For a wrong rollout the last prefix is
bad, so a binary search over prefixes finds the first bad one in about
log2(steps) queries instead of one per step. All rollouts of a batch advance one
search round at a time, each round a single engine call.

A prefix is good as soon as one continuation succeeds, so each query first
samples `first_wave` continuations and only samples the rest of the k (with a
new seed) when none of those succeeded: good prefixes usually cost 1, bad ones k.

Labels: steps before the first error are correct, the first error is incorrect,
later steps get no label (as in OmegaPRM). A rollout whose outcome is unknown
gets `unknown` labels; a probe none of whose continuations could be graded stops
that rollout's search: the steps known good stay correct, the rest up to the
known-bad step are `unknown` with the reason.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

from pydantic import Field

from annotators.base import AnnotationInput, AnnotationOutput, Evidence, LLMAnnotator
from annotators.completions import CompletionOptions, Estimate, PrefixQuery, estimate_prefixes, outcome_of


class BinarySearchOptions(CompletionOptions):
    first_wave: int = Field(default=1, ge=1, description="Continuations tried before the rest of k.")


class _Search:
    """The first error of one rollout lies in [lo, hi]; hi is known bad."""

    def __init__(self, item: AnnotationInput) -> None:
        self.item = item
        self.lo, self.hi = 0, len(item.steps) - 1
        self.values: dict[int, float] = {self.hi: 0.0}
        self.spent = 0
        self.stuck: str | None = None  # why the search stopped before finding the error

    @property
    def active(self) -> bool:
        return self.stuck is None and self.lo < self.hi

    def probe(self) -> PrefixQuery:
        return PrefixQuery(self.item, (self.lo + self.hi) // 2)

    def record(self, step_index: int, found: Estimate) -> None:
        self.spent += found.sampled
        if found.value is None:
            self.stuck = f"prefix through step {step_index}: {found.reason}"
            return
        self.values[step_index] = found.value
        if found.successes:
            self.lo = step_index + 1
        else:
            self.hi = step_index


class BinarySearchMCAnnotator(LLMAnnotator):
    name: ClassVar[str] = "mc_binary"
    version: ClassVar[str] = "2"
    evidence: ClassVar[Evidence] = Evidence(confirms_steps=True, refutes_steps=True, score="probability")
    Config: ClassVar[type[BinarySearchOptions]] = BinarySearchOptions

    def search(self, items: Sequence[AnnotationInput]) -> dict[str, _Search]:
        """Binary searches of every wrong rollout, advanced together one round at a time."""
        searches = {item.rollout.rollout_id: _Search(item) for item in items}
        while active := [s for s in searches.values() if s.active]:
            queries = [s.probe() for s in active]
            # The engine starts only when some rollout needs probing (load_generator caches it).
            for search, query, found in zip(active, queries, self.good_prefix_estimates(queries), strict=True):
                search.record(query.step_index, found)
        return searches

    def good_prefix_estimates(self, queries: list[PrefixQuery]) -> list[Estimate]:
        """Estimates per query, sampling the rest of k (new seed) only where the first wave found no success."""
        generator = self.load_generator()
        first = min(self.config.first_wave, self.config.k)
        found = estimate_prefixes(generator, queries, self.config, n=first)
        rest = self.config.k - first
        retry = [i for i, e in enumerate(found) if e.successes == 0 and rest > 0]
        more = estimate_prefixes(generator, [queries[i] for i in retry], self.config, n=rest, round_index=1)
        for i, extra in zip(retry, more, strict=True):
            found[i] = found[i].plus(extra)
        return found

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        output = AnnotationOutput()
        wrong: list[AnnotationInput] = []
        for item in items:
            if not item.steps:
                output.costs.append(self.cost(item, 0, run_id))
                continue
            grade = outcome_of(item)
            if grade.verdict == "incorrect":
                wrong.append(item)
                continue
            output.costs.append(self.cost(item, 0, run_id))
            if grade.verdict == "correct":
                reason, verdict = "the rollout itself reaches the gold answer", "correct"
            else:
                reason, verdict = f"outcome unknown: {grade.reason}", "unknown"
            output.step_labels.extend(
                self.step_label(item, i, verdict, run_id, score=1.0 if verdict == "correct" else None, reason=reason)
                for i in range(len(item.steps))
            )
        for rid, search in self.search(wrong).items():
            output.costs.append(self.cost(search.item, search.spent, run_id))
            output.step_labels.extend(self.search_labels(search, run_id))
        return output

    def search_labels(self, search: _Search, run_id: str):
        item, values = search.item, search.values
        for i in range(search.lo):
            yield self.step_label(item, i, "correct", run_id, score=values.get(i), reason="before the first error")
        if search.stuck is None:
            yield self.step_label(item, search.lo, "incorrect", run_id, score=values.get(search.lo),
                                  reason="first step after which no completion reaches the gold answer")
            return
        for i in range(search.lo, search.hi + 1):
            yield self.step_label(item, i, "unknown", run_id, reason=f"search stopped: {search.stuck}")
