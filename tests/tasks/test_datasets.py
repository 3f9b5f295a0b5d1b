from rmforge.tasks.datasets import pair_rollouts


def test_preference_pairs_only_pair_verified_outcomes():
    rows = (
        [
            {"rollout_id": f"c{i}", "problem_id": "p", "question": "Q", "response": f"right {i}", "verdict": "correct"}
            for i in range(2)
        ]
        + [
            {
                "rollout_id": f"w{i}",
                "problem_id": "p",
                "question": "Q",
                "response": f"wrong {i}",
                "verdict": "incorrect",
            }
            for i in range(3)
        ]
        + [{"rollout_id": "x", "problem_id": "solo", "question": "Q2", "response": "r", "verdict": "correct"}]
    )
    pairs = pair_rollouts(rows, max_pairs_per_problem=3, run_id="run")
    assert len(pairs) == 3
    assert all(p.chosen.startswith("right") and p.rejected.startswith("wrong") for p in pairs)
    assert {p.chosen_rollout_id for p in pairs} == {"c0", "c1"}  # round robin uses both chosen first
    assert len({p.pair_id for p in pairs}) == 3
