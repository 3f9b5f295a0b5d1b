import pytest

from schemas.config import CurationConfig
from tasks.curate import build_consensus, decide_step
from tasks.datasets import pair_rollouts, process_example


@pytest.mark.parametrize("votes,expected", [
    ({"mc": "correct", "z3_arith": "correct"}, ("correct", True)),
    ({"mc": "correct", "z3_arith": "unknown"}, ("correct", True)),
    ({"mc": "incorrect", "judge": "incorrect", "z3_arith": "unknown"}, ("incorrect", True)),
    ({"mc": "correct", "z3_arith": "incorrect"}, ("unknown", False)),
    ({"mc": "unknown", "z3_arith": "unknown"}, ("unknown", False)),
])
def test_no_contradiction_rule(votes, expected):
    assert decide_step(votes, CurationConfig()) == expected


def test_unanimous_and_required_annotators():
    votes = {"mc": "correct", "z3_arith": "unknown"}
    assert decide_step(votes, CurationConfig(consensus="unanimous")) == ("unknown", False)
    assert decide_step(votes, CurationConfig(required_annotators=["z3_arith"])) == ("unknown", False)
    assert decide_step({"mc": "correct", "judge": "correct"},
                       CurationConfig(required_annotators=["judge"])) == ("correct", True)


def test_consensus_rows_keep_votes_and_mc_soft_label():
    labels = [
        {"rollout_id": "r", "step_index": 0, "annotator": "mc", "verdict": "correct", "score": 0.75},
        {"rollout_id": "r", "step_index": 0, "annotator": "z3_arith", "verdict": "correct", "score": 1.0},
        {"rollout_id": "r", "step_index": 1, "annotator": "mc", "verdict": "correct", "score": 0.25},
        {"rollout_id": "r", "step_index": 1, "annotator": "z3_arith", "verdict": "incorrect", "score": 0.0},
    ]
    rows = build_consensus(labels, CurationConfig(), "run")
    assert [(r.verdict, r.agreed, r.score) for r in rows] == [("correct", True, 0.75), ("unknown", False, 0.25)]
    assert '"z3_arith": "incorrect"' in rows[1].votes


def test_preference_pairs_only_pair_verified_outcomes():
    rows = [
        {"rollout_id": f"c{i}", "problem_id": "p", "question": "Q", "response": f"right {i}", "verdict": "correct"}
        for i in range(2)
    ] + [
        {"rollout_id": f"w{i}", "problem_id": "p", "question": "Q", "response": f"wrong {i}", "verdict": "incorrect"}
        for i in range(3)
    ] + [{"rollout_id": "x", "problem_id": "solo", "question": "Q2", "response": "r", "verdict": "correct"}]
    pairs = pair_rollouts(rows, max_pairs_per_problem=3, run_id="run")
    assert len(pairs) == 3
    assert all(p.chosen.startswith("right") and p.rejected.startswith("wrong") for p in pairs)
    assert {p.chosen_rollout_id for p in pairs} == {"c0", "c1"}  # round robin uses both chosen first
    assert len({p.pair_id for p in pairs}) == 3


def _step(text, verdict, agreed=True, score=None):
    return {"text": text, "verdict": verdict, "agreed": agreed, "score": score, "annotators": ["mc"]}


def test_process_example_stops_at_first_error_and_at_disagreement():
    rollout = {"rollout_id": "r", "problem_id": "p", "question": "Q"}
    example = process_example(rollout, [_step("a", "correct", score=1.0), _step("b", "incorrect", score=0.0),
                                        _step("c", "correct")], "run")
    assert example.completions == ["a", "b"] and example.labels == [True, False]
    assert example.soft_labels == [1.0, 0.0]
    example = process_example(rollout, [_step("a", "correct"), _step("b", "unknown", agreed=False),
                                        _step("c", "correct")], "run")
    assert example.completions == ["a"]
    assert process_example(rollout, [_step("a", "unknown", agreed=False)], "run") is None
    assert process_example(rollout, [{"text": "a", "verdict": None, "agreed": None, "score": None,
                                      "annotators": None}], "run") is None
