"""Near-duplicate search and the dedupe rule, over unit vectors: no Prefect, no store.

`nearest` finds each query's nearest rows, exactly (blocked matrix products) or through a usearch
HNSW index; `first_kept` marks each row that is a near-copy of an earlier kept row, never building
an all-pairs matrix of a large set; `mark_duplicates` is the dedupe rule the curation tasks apply
to rollouts and to problems (tasks/dedupe.py): exact copies of normalised text within a scope,
then near-copies by embedding within a group, the first of each kept.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypedDict, TypeVar

import numpy as np

if TYPE_CHECKING:
    from usearch.index import Index

T = TypeVar("T")
Status = Literal["kept", "exact_duplicate", "near_duplicate", "contaminated"]
# Unit vectors (float32 rows), one per text.
Embedder = Callable[[list[str]], np.ndarray]

# Groups up to this many rows are compared exactly against every earlier row;
# larger ones go through the HNSW index and compare with their nearest rows only.
EXACT_SEARCH_LIMIT = 4096
NEIGHBOURS = 32
RESCORE_BLOCK = 2048  # rows whose candidates are rescored at once: 2048 x 33 x 384 floats, ~100 MB


class HnswSettings(TypedDict):
    """usearch Index arguments."""

    connectivity: int
    expansion_add: int
    expansion_search: int


# HNSW settings measured at 100,000 vectors of dim 384 with the structure of MiniLM embeddings
# (bench/reports/ann.md): recall@10 0.9999 vs exact search, 1,000 queries in ~1 s. Connectivity 16
# reached only 0.98 there (a text with dozens of close variants becomes a hub whose capped links
# strand some of them); f16 storage is as good as f32 and cheaper; i8 is coarser. Decisions never
# use the index's cosines (rescored_candidates).
HNSW: HnswSettings = {"connectivity": 32, "expansion_add": 128, "expansion_search": 128}

# usearch's default (0) asks the hardware and can oversubscribe a CPU-limited container.
_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_SPACE = re.compile(r"\s+")


def normalized_hash(text: str) -> str:
    return hashlib.sha256(_SPACE.sub(" ", text.strip().lower()).encode()).hexdigest()


def nearest(queries: np.ndarray, base: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosines) of the k rows of `base` nearest each query, best first.

    Unit vectors in, so cosine = dot product. `exact` compares in blocks of
    queries (memory: block x len(base)); otherwise an HNSW index answers.
    """
    k = min(k, len(base))
    if exact:
        block = max(1, 4_000_000 // max(len(base), 1))
        indices = np.empty((len(queries), k), dtype=np.int64)
        sims = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), block):
            scores = queries[start : start + block] @ base.T
            top = (
                np.argpartition(-scores, k - 1, axis=1)[:, :k]
                if k < len(base)
                else np.tile(np.arange(len(base)), (len(scores), 1))
            )
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            indices[start : start + block] = np.take_along_axis(top, order, axis=1)
            sims[start : start + block] = np.take_along_axis(top_scores, order, axis=1)
        return indices, sims
    return search_index(hnsw_index(base), queries, k)


def hnsw_index(base: np.ndarray) -> Index:
    """A usearch HNSW index over the rows of `base` (unit vectors), keyed by row number."""
    from usearch.index import Index

    index = Index(ndim=base.shape[1], metric="ip", dtype="f16", **HNSW)
    index.add(np.arange(len(base)), np.ascontiguousarray(base, dtype=np.float32), threads=_THREADS)
    return index


def search_index(index: Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    matches = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, threads=_THREADS)
    # usearch's inner-product distance is 1 - dot; missing results come back as key -1.
    return matches.keys.astype(np.int64), (1.0 - matches.distances).astype(np.float32)


def first_kept(vectors: np.ndarray, threshold: float) -> list[tuple[int, float] | None]:
    """Greedy near-duplicate marking in row order.

    Row i is a duplicate of the most similar earlier row that was kept, when their
    cosine is at least `threshold`; None marks a kept row. Exact up to
    EXACT_SEARCH_LIMIT rows; beyond, each row's candidates are its NEIGHBOURS nearest
    rows from the HNSW index, rescored exactly (the index's f16 cosines never decide
    a pair at the threshold), and a row whose candidates are all at or above the
    threshold (a big cluster of copies: a kept row may lie beyond them) is compared
    with every row exactly. What remains approximate is a pair the index misses
    altogether (bench/reports/ann.md measures how often).
    """
    n = len(vectors)
    if n == 0:
        return []
    if n <= EXACT_SEARCH_LIMIT:
        return mark_first_kept(*nearest(vectors, vectors, n, exact=True), threshold)
    indices, _ = nearest(vectors, vectors, NEIGHBOURS + 1, exact=False)
    return mark_first_kept(*rescored_candidates(vectors, vectors, indices, threshold), threshold)


def rescored_candidates(
    queries: np.ndarray, base: np.ndarray, indices: np.ndarray, threshold: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each query's candidate rows of `base` with exact cosines, best first; a query whose
    candidates are all at or above `threshold` gets every row of `base` above it instead."""
    valid = indices >= 0  # usearch pads a short result with -1
    safe = np.where(valid, indices, 0)
    sims = np.empty(indices.shape, dtype=np.float32)
    for start in range(0, len(queries), RESCORE_BLOCK):  # rows x candidates x dim floats per block
        rows = slice(start, start + RESCORE_BLOCK)
        sims[rows] = np.einsum("id,ikd->ik", queries[rows], base[safe[rows]])
    sims[~valid] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")
    indices, sims = np.take_along_axis(safe, order, axis=1), np.take_along_axis(sims, order, axis=1)
    rows_indices, rows_sims = list(indices), list(sims)
    for i in np.flatnonzero(sims[:, -1] >= threshold):
        exact = base @ queries[i]
        above = np.flatnonzero(exact >= threshold)
        best = above[np.argsort(-exact[above], kind="stable")]
        rows_indices[i], rows_sims[i] = best, exact[best]
    return rows_indices, rows_sims


def mark_first_kept(
    indices: np.ndarray | Sequence[np.ndarray], sims: np.ndarray | Sequence[np.ndarray], threshold: float
) -> list[tuple[int, float] | None]:
    """The greedy pass of `first_kept` over each row's neighbours (best first): one row of
    `indices` and `sims` per vector (a 2-D array, or a list of rows of different lengths)."""
    kept = np.zeros(len(indices), dtype=bool)
    result: list[tuple[int, float] | None] = []
    for i in range(len(indices)):
        match = None
        for j, sim in zip(indices[i], sims[i]):
            if sim < threshold:
                break
            if 0 <= j < i and kept[j]:
                match = (int(j), float(sim))
                break
        kept[i] = match is None
        result.append(match)
    return result


# ---------------------------------------------------------------- the dedupe rule


@dataclass(frozen=True)
class Mark:
    """What deduplication made of one row."""

    status: Status
    duplicate_of: str | None = None  # the key of the kept row it copies
    similarity: float | None = None  # 1.0 for an exact copy, the cosine (4 places) for a near one


def mark_duplicates(
    rows: Sequence[T],
    key: Callable[[T], str],
    text: Callable[[T], str],
    *,
    scope: Callable[[T], Hashable],
    group: Callable[[T], Hashable],
    contaminated: Callable[[T], bool],
    exact: bool,
    near: bool,
    threshold: float,
    vectors_for: Embedder,
) -> dict[str, Mark]:
    """{key: Mark} of `rows`, in the order given: the first of duplicates is kept.

    A `contaminated` row is marked so and not compared. With `exact`, a row whose normalised
    text (case and whitespace) repeats an earlier row's in the same `scope` is an exact
    duplicate of it. With `near`, the rows left are embedded (`vectors_for`) and, within each
    `group` (called only for those rows), a row at cosine `threshold` or more from an earlier
    kept row is a near duplicate of the most similar one (`first_kept`). The rest are kept.
    """
    marks: dict[str, Mark] = {}
    survivors: list[T] = []
    first_by_hash: dict[tuple[Hashable, str], str] = {}
    for row in rows:
        if contaminated(row):
            marks[key(row)] = Mark("contaminated")
            continue
        original = first_by_hash.setdefault((scope(row), normalized_hash(text(row))), key(row))
        if exact and original != key(row):
            marks[key(row)] = Mark("exact_duplicate", duplicate_of=original, similarity=1.0)
        else:
            survivors.append(row)

    if near and survivors:
        vectors = vectors_for([text(row) for row in survivors])
        groups: dict[Hashable, list[int]] = defaultdict(list)
        for i, row in enumerate(survivors):
            groups[group(row)].append(i)
        for members in groups.values():
            for i, match in zip(members, first_kept(vectors[members], threshold)):
                if match is not None:
                    kept_row = survivors[members[match[0]]]
                    marks[key(survivors[i])] = Mark("near_duplicate", key(kept_row), round(match[1], 4))

    for row in rows:
        marks.setdefault(key(row), Mark("kept"))
    return marks
