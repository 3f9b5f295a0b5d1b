"""OmegaPRM-style binary search for the first wrong step.

A prefix is good when any of k continuations reaches the gold answer. A rollout
whose own answer is correct has only good prefixes (it is itself a successful
continuation of each) and costs nothing; those `correct` labels rest only on the
rollout's own outcome (Math-Shepherd's good prefix: a solution can reach the right
answer through a wrong step) and are marked `outcome_implied`. For a wrong rollout the last prefix is
bad, so a binary search over prefixes finds the first bad one in about
log2(steps) queries instead of one per step. Every rollout's search advances as soon
as its own query returns (the generator's pipelined loop): the engine keeps running
the other searches' queries instead of waiting, round by round, for the slowest one.

A prefix is good as soon as one continuation succeeds, so each query first
samples `first_wave` continuations and only samples the rest of the k (with a
new seed) when none of those succeeded: good prefixes usually cost 1, bad ones k.

The search navigates on zero-success probes, but its final claim is tested
(annotators/completions.py, `judge_failed_prefixes`): the step found is `incorrect`
only when the completer reached the gold on this problem somewhere (an earlier
probe, its own rollouts of the problem, an empty-prefix probe, sent as soon as the
problem's last search ends) and E[(1 - p)^k] <= `significance` for its measured rate p
from the question. Otherwise the steps from
that one on are `unknown` with the reason. When the search ends on the last step
(every earlier probe it made succeeded), the rollout's own wrong outcome refutes it.

Labels: steps before the first error are correct, the first error is incorrect,
later steps get no label (as in OmegaPRM). A rollout whose outcome is unknown
gets `unknown` labels; a probe none of whose continuations could be graded stops
that rollout's search: the steps known good stay correct, the rest up to the
known-bad step are `unknown` with the reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import ClassVar

from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Evidence, LLMAnnotator
from rmforge.annotators.completions import (
    CompletionOptions,
    Estimate,
    FailedPrefix,
    FailedPrefixVerdicts,
    PrefixQuery,
    judge_problem,
    outcome_of,
    prefix_estimate_request,
    same_model_rate,
)
from rmforge.generators.base import PipelinedRequest
from rmforge.schemas.records import StepLabel


class BinarySearchOptions(CompletionOptions):
    first_wave: int = Field(default=1, ge=1, description="Continuations tried before the rest of k.")


class _Search:
    """The first error of one rollout lies in [lo, hi]; hi is known bad."""

    def __init__(self, item: AnnotationInput) -> None:
        self.item = item
        self.lo, self.hi = 0, len(item.steps) - 1
        self.estimates: dict[int, Estimate] = {}
        self.spent = 0
        self.stuck: str | None = None  # why the search stopped before finding the error

    @property
    def active(self) -> bool:
        return self.stuck is None and self.lo < self.hi

    def probe(self) -> PrefixQuery:
        return PrefixQuery(self.item, (self.lo + self.hi) // 2)

    @property
    def candidate(self) -> FailedPrefix | None:
        """The first error found by a failed probe (None: stuck, or it is the last step itself)."""
        if self.stuck is not None or self.lo not in self.estimates:
            return None
        # lo > 0 only after a probe before it succeeded
        return FailedPrefix(self.item, self.lo, self.estimates[self.lo], reached_before=self.lo > 0)

    def score(self, step_index: int) -> float | None:
        if step_index in self.estimates:
            return self.estimates[step_index].value
        return 0.0 if step_index == len(self.item.steps) - 1 else None  # the wrong rollout itself

    def record(self, step_index: int, found: Estimate) -> None:
        self.spent += found.sampled
        if found.value is None:
            self.stuck = f"prefix through step {step_index}: {found.reason}"
            return
        self.estimates[step_index] = found
        if found.successes:
            self.lo = step_index + 1
        else:
            self.hi = step_index


class _PipelinedSearches:
    """The binary searches of a batch's wrong rollouts as pipelined requests: each request's `then`
    records its estimate and returns that search's next query (the rest of k after a failed first
    wave, else the next probe), so a search never waits for another. When the last search of a
    problem ends, its candidate `incorrect` prefixes are judged, with the empty-prefix probe where
    it could change a verdict, while other problems' searches still run."""

    def __init__(self, items: Sequence[AnnotationInput], options: BinarySearchOptions, model: str | None) -> None:
        self.options, self.model = options, model
        self.searches = {item.rollout.rollout_id: _Search(item) for item in items}
        self.by_problem: dict[str, list[_Search]] = defaultdict(list)
        for search in self.searches.values():
            self.by_problem[search.item.problem.problem_id].append(search)
        self.searching = Counter({problem_id: len(group) for problem_id, group in self.by_problem.items()})
        self.judged = FailedPrefixVerdicts({}, {})

    def start(self) -> list[PipelinedRequest]:
        return [request for search in self.searches.values() for request in self.advance(search)]

    def advance(self, search: _Search) -> list[PipelinedRequest]:
        if not search.active:
            return self.search_ended(search)
        query = search.probe()
        first = min(self.options.first_wave, self.options.k)
        return [
            prefix_estimate_request(
                query, self.options, first, 0, lambda found: self.after_first_wave(search, query, found)
            )
        ]

    def after_first_wave(self, search: _Search, query: PrefixQuery, found: Estimate) -> list[PipelinedRequest]:
        """The rest of k (a new seed) only where the first wave found no success."""
        rest = self.options.k - min(self.options.first_wave, self.options.k)
        if found.successes or not rest:
            return self.recorded(search, query, found)
        return [
            prefix_estimate_request(
                query, self.options, rest, 1, lambda more: self.recorded(search, query, found.plus(more))
            )
        ]

    def recorded(self, search: _Search, query: PrefixQuery, found: Estimate) -> list[PipelinedRequest]:
        search.record(query.step_index, found)
        return self.advance(search)

    def search_ended(self, search: _Search) -> list[PipelinedRequest]:
        problem_id = search.item.problem.problem_id
        self.searching[problem_id] -= 1
        if self.searching[problem_id]:
            return []
        failed = [c for s in self.by_problem[problem_id] if (c := s.candidate) is not None]
        if not failed:
            return []
        return judge_problem(failed, same_model_rate(failed, self.model), self.options, self.judged)


class BinarySearchMCAnnotator(LLMAnnotator):
    name: ClassVar[str] = "mc_binary"
    version: ClassVar[str] = "3"
    evidence: ClassVar[Evidence] = Evidence(confirms_steps=True, refutes_steps=True, score="probability")
    Config: ClassVar[type[BinarySearchOptions]] = BinarySearchOptions
    config: BinarySearchOptions
    reads_siblings: ClassVar[bool] = True  # the completer's own rollouts of a problem measure its success rate

    def search(self, items: Sequence[AnnotationInput]) -> _PipelinedSearches:
        """Binary searches of every wrong rollout, each advancing as its own queries return, and
        the verdicts on the candidate `incorrect` prefixes they end on."""
        searches = _PipelinedSearches(items, self.config, self.model)
        if first := searches.start():  # the engine starts only when some rollout needs probing
            self.load_generator().run_pipelined(first)
        return searches

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
                output.step_labels.extend(
                    self.step_label(
                        item,
                        i,
                        "correct",
                        run_id,
                        score=1.0,
                        outcome_implied=True,
                        reason="only the rollout's own outcome: it reaches the gold answer",
                    )
                    for i in range(len(item.steps))
                )
            else:
                output.step_labels.extend(
                    self.step_label(item, i, "unknown", run_id, reason=f"outcome unknown: {grade.reason}")
                    for i in range(len(item.steps))
                )
        searched = self.search(wrong)
        judged = searched.judged
        for rid, search in searched.searches.items():
            output.costs.append(self.cost(search.item, search.spent + judged.spent.get(rid, 0), run_id))
            output.step_labels.extend(self.search_labels(search, judged, run_id))
        return output

    def search_labels(self, search: _Search, judged: FailedPrefixVerdicts, run_id: str) -> Iterator[StepLabel]:
        item, lo = search.item, search.lo
        for i in range(lo):
            yield self.step_label(item, i, "correct", run_id, score=search.score(i), reason="before the first error")
        if search.stuck is not None:
            for i in range(lo, search.hi + 1):
                yield self.step_label(item, i, "unknown", run_id, reason=f"search stopped: {search.stuck}")
            return
        if search.candidate is None:  # the search ended on the last step: the rollout's own answer is wrong
            yield self.step_label(
                item,
                lo,
                "incorrect",
                run_id,
                score=search.score(lo),
                reason="last step: the rollout's own outcome is wrong"
                + (", after a prefix that reaches the gold answer" if lo else ""),
            )
            return
        verdict, why = judged.verdicts[(item.rollout.rollout_id, lo)]
        if verdict == "incorrect":
            yield self.step_label(
                item,
                lo,
                "incorrect",
                run_id,
                score=search.score(lo),
                reason=f"first step after which no completion reaches the gold answer: {why}",
            )
            return
        for i in range(lo, len(item.steps)):
            yield self.step_label(
                item,
                i,
                "unknown",
                run_id,
                score=search.score(i),
                reason=f"no completion from step {lo} on reaches the gold answer, not evidence: {why}",
            )
