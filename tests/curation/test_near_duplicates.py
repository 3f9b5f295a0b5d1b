"""Near-duplicate search and the dedupe rule (curation/near_duplicates.py) on synthetic unit vectors;
the dedupe tasks and their embeddings: tests/tasks/test_dedupe.py."""

import numpy as np

from rmforge.curation import near_duplicates
from rmforge.curation.near_duplicates import Mark, first_kept, mark_duplicates, nearest


def unit_vectors(n, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def near_copy(vector, noise, seed):
    rng = np.random.default_rng(seed)
    copy = vector + noise * rng.standard_normal(vector.shape).astype(np.float32)
    return copy / np.linalg.norm(copy)


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
    # Uniform random vectors are HNSW's worst case, and the index is built by several threads, so the
    # graph differs run to run: 0.993-0.999 on idle cores, 0.981 once under CI's load.
    assert recall >= 0.97
    # The index stores f16: cosines within ~1e-3 of float32.
    np.testing.assert_allclose(sims[:, 0], np.sum(queries * base[approx[:, 0]], axis=1), atol=2e-3)


def test_first_kept_marks_copies_of_the_earliest_kept_row():
    originals = unit_vectors(3)
    vectors = np.stack(
        [originals[0], originals[1], near_copy(originals[0], 0.01, 1), near_copy(originals[2], 0.01, 2), originals[2]]
    )
    result = first_kept(vectors, threshold=0.95)
    assert result[0] is None and result[1] is None and result[3] is None
    assert result[2][0] == 0 and result[2][1] > 0.95
    assert result[4][0] == 3  # the copy came first, so it is the kept one


def test_large_groups_use_the_index_and_find_the_same_duplicates(monkeypatch):
    originals = unit_vectors(300, seed=3)
    copies = np.stack([near_copy(v, 0.02, i) for i, v in enumerate(originals[:100])])
    vectors = np.concatenate([originals, copies])
    exact = first_kept(vectors, 0.95)
    monkeypatch.setattr(near_duplicates, "EXACT_SEARCH_LIMIT", 50)
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
    monkeypatch.setattr(near_duplicates, "EXACT_SEARCH_LIMIT", 50)
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
    monkeypatch.setattr(near_duplicates, "EXACT_SEARCH_LIMIT", 50)
    assert same_matches(first_kept(vectors, 0.95), exact)


def same_matches(found, expected):
    """Same rows matched to the same rows, at the same exact cosines (to float32 rounding)."""
    return [m and m[0] for m in found] == [m and m[0] for m in expected] and all(
        abs(a[1] - b[1]) < 1e-6 for a, b in zip(found, expected) if a and b
    )


def test_mark_duplicates_scopes_groups_and_contamination():
    """Exact copies only within a scope, near copies only within a group; the group is asked only of
    rows left after exact dedupe, and contaminated rows are neither embedded nor compared."""
    base = unit_vectors(3, seed=8)
    vector_of = {"a": base[0], "A ": base[0], "a'": near_copy(base[0], 0.01, 9), "c": base[2]}
    rows = [
        ("1", "s", "g", "a"),
        ("2", "s", "g", "A "),
        ("3", "t", "g", "A "),
        ("4", "s", "g", "a'"),
        ("5", "u", "h", "a'"),
        ("6", "s", "g", "c"),
        ("7", "s", "g", "a"),
    ]
    asked, embedded = [], []

    def vectors_for(texts):
        embedded.extend(texts)
        return np.stack([vector_of[t] for t in texts])

    def group(row):
        asked.append(row[0])
        return row[2]

    marks = mark_duplicates(
        rows,
        lambda r: r[0],
        lambda r: r[3],
        scope=lambda r: r[1],
        group=group,
        contaminated=lambda r: r[0] == "6",
        exact=True,
        near=True,
        threshold=0.95,
        vectors_for=vectors_for,
    )
    assert list(marks) == ["2", "6", "7", "3", "4", "1", "5"]  # exact and contaminated, near, then kept
    assert marks["2"] == marks["7"] == Mark("exact_duplicate", "1", 1.0)
    assert marks["6"] == Mark("contaminated")
    assert marks["3"] == Mark("near_duplicate", "1", 1.0)  # another scope: not an exact copy
    assert marks["4"].status == "near_duplicate" and marks["4"].duplicate_of == "1" and marks["4"].similarity >= 0.95
    assert marks["1"] == marks["5"] == Mark("kept")  # "5" is in another scope and group
    assert asked == ["1", "3", "4", "5"] and embedded == ["a", "A ", "a'", "a'"]
    without = mark_duplicates(
        rows,
        lambda r: r[0],
        lambda r: r[3],
        scope=lambda r: r[1],
        group=group,
        contaminated=lambda r: False,
        exact=False,
        near=False,
        threshold=0.95,
        vectors_for=vectors_for,
    )
    assert set(without.values()) == {Mark("kept")}
