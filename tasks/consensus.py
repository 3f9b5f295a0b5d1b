"""Consensus: what the curated datasets say about each step and each final answer.

Rules (each has known-answer tests in tests/tasks/test_consensus.py):

1. Only evidence votes. A verdict counts when the annotator's `Evidence` says it can give
   it: a refute-only checker's `correct` ("no false claim found") abstains, and `unknown`
   always abstains.
2. A human verdict outranks everything. Under `ranked` (the default) the highest authority
   with evidence decides (human > verifier > model), so a formal refutation outranks model
   votes; voters of that authority must agree, else the step stays undecided. Under
   `no_contradiction` any disagreement leaves the step undecided (unless a human decided);
   `unanimous` also needs every voter to have decided.
3. A rollout whose final answer is judged incorrect casts an `incorrect` vote on its last
   step, with the authority of the outcome's supporters: as in Math-Shepherd, a solution
   ending in a wrong answer ends in a wrong step unless an earlier step already is.
4. Every verdict names the voters that support it and those it overruled.
5. A label that rests only on the rollout's own correct outcome (`outcome_implied`) is marked
   in `votes`; the verdict is `outcome_implied` when every supporter's vote is. With
   `direct_step_evidence` such votes abstain.

The outcome consensus (is the final answer right?) follows rule 2 under `ranked`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.annotators import REGISTRY, annotator_class
from rmforge.annotators.base import AUTHORITY_RANK, Evidence
from rmforge.schemas.config import CurationConfig
from rmforge.schemas.records import OutcomeConsensus, StepConsensus, Verdict, canonical_json
from rmforge.store import Store
from rmforge.tasks import chunks

HUMAN_RANK = AUTHORITY_RANK["human"]
FINAL_ANSWER = "final answer"  # suffix of the last-step vote cast by an incorrect outcome
CHUNK_ROLLOUTS = 20_000  # rollouts whose labels are held in memory at once


@dataclass(frozen=True)
class Vote:
    voter: str  # "mc", "human:alice", "answer (final answer)"
    annotator: str
    verdict: Verdict
    rank: int
    counts: bool  # evidence, not an abstention
    score: float | None = None
    probability: bool = False  # the score is an estimated probability (a soft label)
    outcome_implied: bool = False  # rests only on the rollout's own correct outcome

    @property
    def marked(self) -> str:
        """The verdict as `votes` records it."""
        return f"{self.verdict} (outcome-implied)" if self.outcome_implied else self.verdict


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    agreed: bool
    supporters: tuple[str, ...] = ()
    overruled: tuple[str, ...] = ()


UNDECIDED = Decision("unknown", False)


def evidence_of(annotators: Iterable[str]) -> dict[str, Evidence]:
    """Each annotator's declared evidence; raises ValueError for an unknown name."""
    return {name: annotator_class(name).evidence for name in annotators}


def voter_name(annotator: str, evidence: Evidence, model: str | None) -> str:
    """People vote one by one (each reviewer is a voter); a program votes once."""
    return f"{annotator}:{model}" if evidence.authority == "human" and model else annotator


def step_vote(row: dict[str, Any], evidence: Evidence, direct_step_evidence: bool = False) -> Vote:
    """A step label as a vote; `direct_step_evidence`: one resting only on the outcome abstains."""
    outcome_implied = bool(row.get("outcome_implied"))  # NULL in rows stored before the column
    return Vote(
        voter=voter_name(row["annotator"], evidence, row.get("model")),
        annotator=row["annotator"],
        verdict=row["verdict"],
        rank=AUTHORITY_RANK[evidence.authority],
        counts=evidence.counts(row["verdict"]) and not (direct_step_evidence and outcome_implied),
        score=row.get("score"),
        probability=evidence.score == "probability",
        outcome_implied=outcome_implied,
    )


def outcome_vote(row: dict[str, Any], evidence: Evidence) -> Vote:
    return Vote(
        voter=voter_name(row["annotator"], evidence, row.get("model")),
        annotator=row["annotator"],
        verdict=row["verdict"],
        rank=AUTHORITY_RANK[evidence.authority],
        counts=row["verdict"] in ("correct", "incorrect"),
    )


def decide(votes: Sequence[Vote], policy: str = "ranked", required: Sequence[str] = ()) -> Decision:
    """One verdict from a step's (or an outcome's) votes; see the module rules."""
    counted = [v for v in votes if v.counts]
    if not counted:
        return UNDECIDED
    top = max(v.rank for v in counted)
    verdicts = {v.verdict for v in counted if v.rank == top}
    if len(verdicts) > 1:
        return UNDECIDED
    verdict = verdicts.pop()
    supporters = tuple(sorted({v.voter for v in counted if v.verdict == verdict}))
    overruled = tuple(sorted({v.voter for v in counted if v.verdict != verdict}))
    if top == HUMAN_RANK:
        return Decision(verdict, True, supporters, overruled)
    if policy != "ranked" and overruled:
        return UNDECIDED
    if policy == "unanimous" and any(v.verdict == "unknown" for v in votes):
        return UNDECIDED
    backing = {v.annotator for v in counted if v.verdict == verdict}
    if any(name not in backing for name in required):
        return UNDECIDED
    return Decision(verdict, True, supporters, overruled)


def final_answer_votes(outcome: Decision, outcome_votes: Sequence[Vote]) -> list[Vote]:
    """An incorrect final answer refutes the last step, with its supporters' authority."""
    if outcome.verdict != "incorrect":
        return []
    return [
        Vote(voter=f"{v.voter} ({FINAL_ANSWER})", annotator=v.annotator, verdict="incorrect", rank=v.rank, counts=True)
        for v in outcome_votes
        if v.counts and v.voter in outcome.supporters
    ]


def rests_on_outcome(decision: Decision, votes: Sequence[Vote]) -> bool:
    """Whether every vote supporting the decided verdict rests only on the rollout's own outcome."""
    supporting = [v for v in votes if v.counts and v.voter in decision.supporters]
    return decision.agreed and bool(supporting) and all(v.outcome_implied for v in supporting)


def soft_label(decision: Decision, votes: Sequence[Vote]) -> float | None:
    """An agreeing probability estimate (an MC value, a PRM score), else the hard label as 1.0 / 0.0."""
    if not decision.agreed:
        return None
    for vote in votes:
        if vote.counts and vote.probability and vote.score is not None and vote.verdict == decision.verdict:
            return float(vote.score)
    return 1.0 if decision.verdict == "correct" else 0.0


def rollout_consensus(
    rollout_id: str,
    step_rows: Sequence[dict[str, Any]],
    outcome_rows: Sequence[dict[str, Any]],
    last_step: int | None,
    evidence: dict[str, Evidence],
    config: CurationConfig,
    run_id: str,
) -> tuple[list[StepConsensus], OutcomeConsensus | None]:
    """Step and outcome consensus of one rollout from its latest labels."""
    outcome_votes = [outcome_vote(r, evidence[r["annotator"]]) for r in outcome_rows]
    outcome = decide(outcome_votes) if outcome_votes else None
    votes_by_step: dict[int, list[Vote]] = defaultdict(list)
    for row in step_rows:
        votes_by_step[row["step_index"]].append(step_vote(row, evidence[row["annotator"]], config.direct_step_evidence))
    if outcome is not None and last_step is not None:
        for vote in final_answer_votes(outcome, outcome_votes):
            votes_by_step[last_step].append(vote)
    steps = []
    for step_index, votes in sorted(votes_by_step.items()):
        decision = decide(votes, config.consensus, config.required_annotators)
        steps.append(
            StepConsensus(
                rollout_id=rollout_id,
                step_index=step_index,
                verdict=decision.verdict,
                agreed=decision.agreed,
                score=soft_label(decision, votes),
                annotators=sorted({v.voter for v in votes}),
                supporters=list(decision.supporters),
                overruled=list(decision.overruled),
                votes=canonical_json({v.voter: v.marked for v in votes}),
                outcome_implied=rests_on_outcome(decision, votes),
                run_id=run_id,
            )
        )
    outcome_row = None
    if outcome is not None:
        outcome_row = OutcomeConsensus(
            rollout_id=rollout_id,
            verdict=outcome.verdict,
            supporters=list(outcome.supporters),
            votes=canonical_json({v.voter: v.verdict for v in outcome_votes}),
            run_id=run_id,
        )
    return steps, outcome_row


def voting_annotators(store: Store, annotators: Sequence[str]) -> list[str]:
    """The requested annotators plus every human-authority annotator with labels."""
    requested = list(dict.fromkeys(annotators))
    evidence_of(requested)  # unknown names fail before any work
    present = {
        r["annotator"]
        for r in store.rows(
            "SELECT DISTINCT annotator FROM step_labels UNION SELECT DISTINCT annotator FROM outcome_labels"
        )
    }
    humans = [n for n in sorted(present & set(REGISTRY)) if annotator_class(n).evidence.authority == "human"]
    return requested + [n for n in humans if n not in requested]


# The newest label of each voter; not the `newest_*_labels` views: here every human reviewer keeps
# a vote of their own (per model), and the chunk's rollouts are picked before the ranking, which
# would otherwise rank every label in the store once per chunk.
_LATEST = """
    SELECT * FROM {table}
    WHERE annotator IN (SELECT UNNEST(?)) AND rollout_id IN (SELECT UNNEST(?))
    QUALIFY row_number() OVER (
        PARTITION BY rollout_id{step}, annotator, CASE WHEN annotator IN (SELECT UNNEST(?)) THEN model END
        ORDER BY labeled_at DESC) = 1
"""


def consensus_rows(
    store: Store, annotators: Sequence[str], config: CurationConfig, run_id: str, rollout_ids: Sequence[str]
) -> tuple[list[StepConsensus], list[OutcomeConsensus]]:
    """Consensus for the given rollouts from the newest label of each voter."""
    evidence = evidence_of(annotators)
    humans = [n for n, e in evidence.items() if e.authority == "human"]
    ids = list(rollout_ids)
    step_rows = store.rows(_LATEST.format(table="step_labels", step=", step_index"), [list(annotators), ids, humans])
    outcome_rows = store.rows(_LATEST.format(table="outcome_labels", step=""), [list(annotators), ids, humans])
    last_steps = {
        r["rollout_id"]: r["last"]
        for r in store.rows(
            "SELECT rollout_id, max(step_index) AS last FROM steps WHERE rollout_id IN (SELECT UNNEST(?)) "
            "GROUP BY rollout_id",
            [ids],
        )
    }
    steps_by_rollout: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in step_rows:
        steps_by_rollout[row["rollout_id"]].append(row)
    outcomes_by_rollout: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in outcome_rows:
        outcomes_by_rollout[row["rollout_id"]].append(row)
    # Votes are listed in the order the annotators were given (the first probability wins).
    order = {name: i for i, name in enumerate(annotators)}
    step_out: list[StepConsensus] = []
    outcome_out: list[OutcomeConsensus] = []
    for rollout_id in sorted(set(steps_by_rollout) | set(outcomes_by_rollout)):
        rows = sorted(steps_by_rollout[rollout_id], key=lambda r: order[r["annotator"]])
        steps, outcome = rollout_consensus(
            rollout_id, rows, outcomes_by_rollout[rollout_id], last_steps.get(rollout_id), evidence, config, run_id
        )
        step_out.extend(steps)
        if outcome is not None:
            outcome_out.append(outcome)
    return step_out, outcome_out


@task(name="build-consensus", cache_policy=NO_CACHE)
def compute_consensus(db: str, annotators: list[str], config: CurationConfig, run_id: str) -> dict[str, int]:
    """Rebuild step_consensus and outcome_consensus in one transaction (never seen half-built)."""
    counts = {"steps": 0, "agreed": 0, "outcomes": 0, "outcomes_decided": 0}
    with Store(db) as store:
        voters = voting_annotators(store, annotators)
        rollout_ids = [r["rollout_id"] for r in store.rows("SELECT rollout_id FROM rollouts ORDER BY rollout_id")]
        with store.transaction():
            store.execute("DELETE FROM step_consensus")
            store.execute("DELETE FROM outcome_consensus")
            for chunk in chunks(rollout_ids, CHUNK_ROLLOUTS):
                steps, outcomes = consensus_rows(store, voters, config, run_id, chunk)
                store.write("step_consensus", steps)
                store.write("outcome_consensus", outcomes)
                counts["steps"] += len(steps)
                counts["agreed"] += sum(s.agreed for s in steps)
                counts["outcomes"] += len(outcomes)
                counts["outcomes_decided"] += sum(o.verdict != "unknown" for o in outcomes)
    counts["excluded"] = counts["steps"] - counts["agreed"]
    return counts
