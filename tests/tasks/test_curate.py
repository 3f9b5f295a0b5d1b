from schemas.config import CurationConfig
from tasks.curate import find_duplicates
from tasks.datasets import pair_rollouts


def test_exact_and_near_duplicates_are_found_within_a_problem():
    rollouts = [
        {"rollout_id": "a", "problem_id": "p", "response": "Step 1: 3 + 4 = 7. The answer is 7."},
        {"rollout_id": "b", "problem_id": "p", "response": "step 1: 3 + 4 = 7.   The answer is 7."},
        {"rollout_id": "c", "problem_id": "p", "response": "Step 1: 3 + 4 = 7. So the answer is 7."},
        {"rollout_id": "d", "problem_id": "p", "response": "Bananas are yellow and grow in bunches on tall plants."},
        {"rollout_id": "e", "problem_id": "q", "response": "Step 1: 3 + 4 = 7. The answer is 7."},
        {"rollout_id": "f", "problem_id": "p", "response": "Step 1: 3 + 4 = 8. The answer is 8."},
    ]
    status = {r.rollout_id: r for r in find_duplicates(rollouts, CurationConfig(near_duplicate_threshold=0.9), "run")}
    assert status["a"].status == "kept"
    assert status["b"].status == "exact_duplicate" and status["b"].duplicate_of == "a"
    assert status["c"].status == "near_duplicate" and status["c"].similarity >= 0.9
    assert status["d"].status == "kept"
    assert status["e"].status == "kept"  # other problem
    assert status["f"].status == "kept"  # same words, different answer: not a duplicate


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
