"""Known-answer tests for every consensus rule (tasks/consensus.py) and process examples."""

import json

import pytest

from rmforge.schemas.config import CurationConfig
from rmforge.tasks.consensus import Vote, decide, evidence_of, outcome_vote, rollout_consensus, step_vote
from rmforge.tasks.datasets import (
    NO_DECIDED_STEP,
    OUTCOME_UNKNOWN_INCOMPLETE,
    WRONG_ANSWER_ALL_CORRECT,
    process_example,
)

EVIDENCE = evidence_of(["mc", "mc_binary", "judge", "z3_arith", "z3_logic", "answer", "human"])


def votes(**verdicts: str) -> list[Vote]:
    return [step_vote({"annotator": name, "verdict": v, "model": None}, EVIDENCE[name]) for name, v in verdicts.items()]


def test_refute_only_correct_abstains():
    assert decide(votes(z3_arith="correct")).verdict == "unknown"
    assert not decide(votes(z3_arith="correct")).agreed
    decision = decide(votes(z3_arith="correct", mc="correct"))
    assert (decision.verdict, decision.agreed, decision.supporters) == ("correct", True, ("mc",))


def test_refute_only_incorrect_counts():
    decision = decide(votes(z3_arith="incorrect"))
    assert (decision.verdict, decision.agreed, decision.supporters) == ("incorrect", True, ("z3_arith",))


def test_unknown_votes_abstain():
    assert decide(votes(mc="unknown", judge="unknown")).agreed is False
    assert decide(votes(mc="correct", judge="unknown")).verdict == "correct"


def test_formal_refutation_outranks_model_votes_under_ranked():
    decision = decide(votes(mc="correct", judge="correct", z3_arith="incorrect"))
    assert (decision.verdict, decision.agreed) == ("incorrect", True)
    assert decision.supporters == ("z3_arith",) and decision.overruled == ("judge", "mc")


def test_formal_confirmation_outranks_model_refutation():
    assert decide(votes(z3_logic="correct", mc="incorrect")).verdict == "correct"


def test_same_authority_disagreement_is_undecided():
    assert decide(votes(mc="correct", judge="incorrect")) == decide([])
    assert decide(votes(mc="correct", judge="incorrect")).agreed is False


def test_no_contradiction_leaves_any_disagreement_undecided():
    assert decide(votes(mc="correct", z3_arith="incorrect"), "no_contradiction").agreed is False
    assert decide(votes(mc="correct", z3_arith="correct"), "no_contradiction").verdict == "correct"


def test_unanimous_needs_every_voter_decided():
    assert decide(votes(mc="correct", judge="unknown"), "unanimous").agreed is False
    assert decide(votes(mc="correct", judge="correct"), "unanimous").verdict == "correct"
    # a refute-only checker that found nothing wrong does not block unanimity
    assert decide(votes(mc="correct", z3_arith="correct"), "unanimous").verdict == "correct"


def test_required_annotators_must_support_the_verdict():
    assert decide(votes(mc="correct"), required=["judge"]).agreed is False
    assert decide(votes(mc="correct", judge="correct"), required=["judge", "mc"]).verdict == "correct"
    assert decide(votes(mc="incorrect", judge="incorrect", z3_arith="correct"), required=["z3_arith"]).agreed is False


def test_human_outranks_everything_under_every_policy():
    for policy in ("ranked", "no_contradiction", "unanimous"):
        decision = decide(votes(z3_arith="incorrect", mc="incorrect", human="correct"), policy, ["mc"])
        assert (decision.verdict, decision.agreed) == ("correct", True)
        assert decision.overruled == ("mc", "z3_arith")


def test_two_reviewers_are_two_voters():
    alice = step_vote({"annotator": "human", "verdict": "correct", "model": "alice"}, EVIDENCE["human"])
    bob = step_vote({"annotator": "human", "verdict": "incorrect", "model": "bob"}, EVIDENCE["human"])
    assert (alice.voter, bob.voter) == ("human:alice", "human:bob")
    assert decide([alice, bob, *votes(mc="correct")]).agreed is False
    assert decide([alice, *votes(mc="incorrect")]).supporters == ("human:alice",)


def _labels(rollout: str, per_step: dict[int, dict[str, str]]) -> list[dict]:
    return [
        {"rollout_id": rollout, "step_index": i, "annotator": a, "verdict": v, "model": None, "score": None}
        for i, by_annotator in per_step.items()
        for a, v in by_annotator.items()
    ]


def test_incorrect_outcome_refutes_the_last_step():
    steps = _labels("r", {0: {"mc": "correct"}, 1: {"mc": "correct", "z3_arith": "correct"}})
    outcome = [{"rollout_id": "r", "annotator": "answer", "verdict": "incorrect", "model": None}]
    rows, decided = rollout_consensus("r", steps, outcome, 1, EVIDENCE, CurationConfig(), "run")
    assert decided.verdict == "incorrect" and decided.supporters == ["answer"]
    assert [(r.verdict, r.agreed) for r in rows] == [("correct", True), ("incorrect", True)]
    assert rows[1].supporters == ["answer (final answer)"] and rows[1].overruled == ["mc"]
    # under no_contradiction the model vote and the final answer disagree: undecided
    rows, _ = rollout_consensus("r", steps, outcome, 1, EVIDENCE, CurationConfig(consensus="no_contradiction"), "run")
    assert rows[1].agreed is False


def test_correct_outcome_confirms_no_step():
    steps = _labels("r", {0: {"z3_arith": "correct"}})
    outcome = [{"rollout_id": "r", "annotator": "answer", "verdict": "correct", "model": None}]
    rows, decided = rollout_consensus("r", steps, outcome, 0, EVIDENCE, CurationConfig(), "run")
    assert decided.verdict == "correct"
    assert (rows[0].verdict, rows[0].agreed) == ("unknown", False)


def test_outcome_consensus_ranks_verifier_over_judge_and_human_over_all():
    def outcome_of(*rows):
        return rollout_consensus("r", [], list(rows), None, EVIDENCE, CurationConfig(), "run")[1]

    answer = {"annotator": "answer", "verdict": "incorrect", "model": None}
    judge = {"annotator": "judge", "verdict": "correct", "model": None}
    human = {"annotator": "human", "verdict": "correct", "model": "ann"}
    assert outcome_of(answer, judge).verdict == "incorrect"
    assert outcome_of(answer, judge, human).supporters == ["human:ann", "judge"]
    assert outcome_of({"annotator": "answer", "verdict": "unknown", "model": None}).verdict == "unknown"


def test_soft_label_is_an_agreeing_probability_else_the_hard_label():
    steps = [
        {"rollout_id": "r", "step_index": 0, "annotator": "mc", "verdict": "correct", "model": None, "score": 0.75},
        {"rollout_id": "r", "step_index": 1, "annotator": "mc", "verdict": "correct", "model": None, "score": 0.5},
        {
            "rollout_id": "r",
            "step_index": 1,
            "annotator": "z3_arith",
            "verdict": "incorrect",
            "model": None,
            "score": 0.0,
        },
    ]
    rows, _ = rollout_consensus("r", steps, [], 1, EVIDENCE, CurationConfig(), "run")
    assert [r.score for r in rows] == [0.75, 0.0]


def test_outcome_vote_counts_only_decisive_verdicts():
    assert outcome_vote({"annotator": "answer", "verdict": "unknown"}, EVIDENCE["answer"]).counts is False


ROLLOUT = {"rollout_id": "r", "problem_id": "p", "question": "Q"}


def _step(text, verdict, agreed=True, score=None, supporters=("mc",)):
    return {"text": text, "verdict": verdict, "agreed": agreed, "score": score, "supporters": list(supporters)}


def test_process_example_stops_at_the_first_error_with_supporters():
    example = process_example(
        ROLLOUT,
        [_step("a", "correct", score=0.5), _step("b", "incorrect", supporters=("z3_arith",)), _step("c", "correct")],
        "incorrect",
        "run",
    )
    assert example.completions == ["a", "b"] and example.labels == [True, False]
    assert example.soft_labels == [0.5, 0.0]
    assert example.label_supporters == [["mc"], ["z3_arith"]]
    assert example.annotators == ["mc", "z3_arith"]


@pytest.mark.parametrize(
    "outcome,expected",
    [
        ("correct", ["a"]),  # a right answer: the agreed prefix is a valid example
        ("incorrect", WRONG_ANSWER_ALL_CORRECT),  # never all-correct labels on a wrong answer
        ("unknown", OUTCOME_UNKNOWN_INCOMPLETE),
        (None, OUTCOME_UNKNOWN_INCOMPLETE),
    ],
)
def test_process_example_rules_on_an_undecided_step(outcome, expected):
    result = process_example(ROLLOUT, [_step("a", "correct"), _step("b", "unknown", agreed=False)], outcome, "run")
    assert (result.completions if not isinstance(result, str) else result) == expected


def test_process_example_with_unknown_outcome_needs_every_step_decided():
    complete = [_step("a", "correct"), _step("b", "correct")]
    assert process_example(ROLLOUT, complete, "unknown", "run").labels == [True, True]
    ends_wrong = [_step("a", "correct"), _step("b", "incorrect"), _step("c", "unknown", agreed=False)]
    assert process_example(ROLLOUT, ends_wrong, None, "run").labels == [True, False]
    assert process_example(ROLLOUT, [_step("a", "unknown", agreed=False)], "correct", "run") == NO_DECIDED_STEP
    unlabelled = {"text": "a", "verdict": None, "agreed": None, "score": None, "supporters": None}
    assert process_example(ROLLOUT, [unlabelled], "correct", "run") == NO_DECIDED_STEP


def test_soft_labels_are_never_null():
    example = process_example(ROLLOUT, [_step("a", "correct", score=None)], "correct", "run")
    assert example.soft_labels == [1.0]


# ---------------------------------------------------------------- labels resting only on the outcome


def _implied(rollout, step, annotator, verdict, outcome_implied, score=None):
    return {
        "rollout_id": rollout,
        "step_index": step,
        "annotator": annotator,
        "verdict": verdict,
        "model": None,
        "score": score,
        "outcome_implied": outcome_implied,
    }


# step 0: mc_binary from the outcome alone; step 1: mc_binary from the outcome and judge directly;
# step 2: a label stored before the column existed (NULL) is direct evidence
IMPLIED_ROWS = [
    _implied("r", 0, "mc_binary", "correct", True, score=1.0),
    _implied("r", 1, "mc_binary", "correct", True, score=0.9),
    _implied("r", 1, "judge", "correct", False),
    _implied("r", 2, "mc_binary", "correct", None, score=0.5),
]


def test_a_verdict_resting_only_on_the_outcome_is_marked():
    rows, _ = rollout_consensus("r", IMPLIED_ROWS, [], 2, EVIDENCE, CurationConfig(), "run")
    assert [(r.verdict, r.agreed, r.outcome_implied) for r in rows] == [
        ("correct", True, True),
        ("correct", True, False),
        ("correct", True, False),
    ]
    assert json.loads(rows[0].votes) == {"mc_binary": "correct (outcome-implied)"}
    assert rows[1].supporters == ["judge", "mc_binary"] and rows[1].score == 0.9


def test_direct_step_evidence_makes_outcome_implied_votes_abstain():
    config = CurationConfig(direct_step_evidence=True)
    rows, _ = rollout_consensus("r", IMPLIED_ROWS, [], 2, EVIDENCE, config, "run")
    assert [(r.verdict, r.agreed, r.outcome_implied) for r in rows] == [
        ("unknown", False, False),
        ("correct", True, False),
        ("correct", True, False),
    ]
    assert rows[1].supporters == ["judge"]
    assert rows[1].score == 1.0  # the hard label: the abstaining vote's score is no soft label
    assert rows[2].score == 0.5


def test_process_example_carries_outcome_implied_flags():
    steps = [{**_step("a", "correct"), "outcome_implied": False}, {**_step("b", "correct"), "outcome_implied": True}]
    assert process_example(ROLLOUT, steps, "correct", "run").outcome_implied == [False, True]
    assert process_example(ROLLOUT, [_step("a", "correct")], "correct", "run").outcome_implied == [False]
