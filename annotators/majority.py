"""`majority` annotator: self-consistency outcome labels for problems without a gold answer.

As in test-time RL without verifiers (TTRL): a problem's rollouts vote with their final
answers, and the answer more than `min_share` of them reach is taken as right. A
rollout reaching it is `correct`, one reaching another answer `incorrect`; the score is
the vote share of the rollout's answer. This is the model's consensus, not a check
(authority `model`): a majority can be wrong together.

What the vote claims, and where it abstains (`unknown`):

* The problem has a gold answer: the `answer` verifier decides, so the vote abstains.
* Fewer than `min_samples` rollouts of the problem, or no answer reached by more than
  `min_share` of them (ties included): no majority.
* The rollout is truncated or has no final answer: it cast no vote.
* The checker could not tell whether its answer equals the majority's.

Shares count every rollout of the problem, voting or not, so an answer reached by 3 of
10 rollouts (7 truncated) is no majority. `min_share` is at least one half: a strict
majority cannot be outvoted by answers the checker failed to compare with it.

Answers are read from their markers (`\\boxed{}`, "The answer is", ...): the prose
reading of `verifiers.answers` needs a gold to know what kind of answer to look for.
Equal answers are grouped by their normalised text first, then the distinct groups are
merged by the bounded math-verify comparison (`1/2`, `0.5` and `\\frac{1}{2}` are one
answer), so the slow comparison runs once per pair of distinct answers, not of rollouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from rmforge.schemas.config import Config as StrictConfig
from rmforge.schemas.records import Rollout, Verdict
from rmforge.verifiers.answers import answers_equivalent, extract_final_answer, normalised_answer

GOLD_PRESENT = "gold answer present: the `answer` verifier decides"
# Answers are quoted in reasons up to this length.
_QUOTE_CHARS = 40


@dataclass
class AnswerGroup:
    """Rollouts whose final answers are equivalent, under the first answer seen."""

    answer: str
    rollout_ids: list[str] = field(default_factory=list)
    # Answers of other groups the checker could not compare with this one.
    undecided: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Vote:
    """One problem's vote: each rollout's answer (None: no vote cast), answer groups largest first."""

    answers: dict[str, str | None]
    groups: list[AnswerGroup]

    @property
    def rollouts(self) -> int:
        return len(self.answers)

    def group_of(self, rollout_id: str) -> AnswerGroup | None:
        return next((group for group in self.groups if rollout_id in group.rollout_ids), None)


def voted_answer(rollout: Rollout) -> str | None:
    """The final answer a rollout votes with; None when truncated or answer-less."""
    if rollout.finish_reason == "length":
        return None
    return extract_final_answer(rollout.response)


def group_answers(answers: dict[str, str], domain: str, timeout_s: float) -> list[AnswerGroup]:
    """Rollouts grouped by equivalent answers, largest group first (ties: first answer seen)."""
    by_text: dict[str, AnswerGroup] = {}
    for rollout_id, answer in answers.items():
        by_text.setdefault(normalised_answer(answer, domain), AnswerGroup(answer)).rollout_ids.append(rollout_id)
    merged: list[AnswerGroup] = []
    for group in by_text.values():
        for kept in merged:
            same = answers_equivalent(kept.answer, group.answer, domain=domain, timeout_s=timeout_s)
            if same:
                kept.rollout_ids.extend(group.rollout_ids)
                break
            if same is None:  # undecidable: kept apart, and neither may be called the other's rival
                kept.undecided.add(group.answer)
                group.undecided.add(kept.answer)
        else:
            merged.append(group)
    return sorted(merged, key=lambda g: len(g.rollout_ids), reverse=True)


def take_vote(rollouts: Sequence[Rollout], domain: str, timeout_s: float) -> Vote:
    answers = {rollout.rollout_id: voted_answer(rollout) for rollout in rollouts}
    voting = {rollout_id: answer for rollout_id, answer in answers.items() if answer is not None}
    return Vote(answers, group_answers(voting, domain, timeout_s))


def _quote(answer: str) -> str:
    return answer if len(answer) <= _QUOTE_CHARS else answer[: _QUOTE_CHARS - 3] + "..."


def _tally(group: AnswerGroup, total: int) -> str:
    return f"{len(group.rollout_ids)} of {total} rollouts answer {_quote(group.answer)}"


class MajorityAnnotator(Annotator):
    """One outcome label per rollout of a problem without gold: is its answer the one most of its rollouts reach?"""

    name = "majority"
    version = "1"
    evidence = Evidence(labels_outcomes=True, authority="model", score="vote_share")
    cpu_bound = True
    reads_siblings = True

    class Config(StrictConfig):
        min_share: float = Field(
            default=0.5,
            ge=0.5,
            lt=1,
            description=(
                "The majority answer must be reached by strictly more than this share of the "
                "problem's rollouts (at least one half: a strict majority)."
            ),
        )
        min_samples: int = Field(
            default=4, ge=2, description="Fewest rollouts of a problem (voting or not) for a vote to count."
        )
        timeout_s: float = Field(default=5.0, gt=0, description="Wall-clock limit per answer comparison (math-verify).")

    config: Config

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        output = AnnotationOutput()
        votes: dict[str, Vote] = {}  # a batch often holds several rollouts of one problem
        for item in items:
            verdict, score, reason = self.verdict_for(item, votes)
            output.outcome_labels.append(
                self.outcome_label(
                    item,
                    verdict,
                    run_id,
                    predicted_answer=voted_answer(item.rollout),
                    score=score,
                    reason=reason,
                )
            )
        return output

    def verdict_for(self, item: AnnotationInput, votes: dict[str, Vote]) -> tuple[Verdict, float | None, str]:
        """(verdict, vote share, reason) for one rollout; `votes` caches each problem's vote."""
        gold = item.problem.gold_answer
        if gold is not None and gold.strip():
            return "unknown", None, GOLD_PRESENT
        problem_id = item.problem.problem_id
        if problem_id not in votes:
            rollouts = sorted([item.rollout, *item.siblings], key=lambda r: r.rollout_id)
            votes[problem_id] = take_vote(rollouts, item.problem.domain, self.config.timeout_s)
        vote = votes[problem_id]
        if vote.rollouts < self.config.min_samples:
            needed = self.config.min_samples
            return "unknown", None, f"{vote.rollouts} rollouts of this problem; a vote needs {needed}"
        own = vote.group_of(item.rollout.rollout_id)
        if own is None:
            why = "truncated" if item.rollout.finish_reason == "length" else "no final answer"
            return "unknown", None, f"{why}: no vote cast"
        leader = vote.groups[0]
        share = len(leader.rollout_ids) / vote.rollouts
        if share <= self.config.min_share:
            tallies = "; ".join(_tally(group, vote.rollouts) for group in vote.groups[:2])
            return (
                "unknown",
                None,
                (f"no answer reached by more than {self.config.min_share:.0%} of rollouts: {tallies}"),
            )
        if own is leader:
            return "correct", share, _tally(leader, vote.rollouts)
        majority = _tally(leader, vote.rollouts)
        if leader.answer in own.undecided:
            return "unknown", None, f"cannot tell whether {_quote(own.answer)} equals the majority answer ({majority})"
        return "incorrect", len(own.rollout_ids) / vote.rollouts, f"answers {_quote(own.answer)}; {majority}"
