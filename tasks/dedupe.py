"""Deduplication: rollouts within a problem and final answer, problems across the store.

The rule and the near-duplicate search are `curation/near_duplicates.py`; the embeddings come
from `generators/embeddings.py` and are cached in the store (`text_embeddings`, keyed by text
hash, model and dtype), so a rerun embeds only new texts. Near-duplicate search never builds
an all-pairs matrix of the whole store: small groups are searched exactly in blocks, larger
ones through a usearch HNSW index (bench/reports/ann.md).

Both curation tables are derived: each run recomputes them from the raw rollouts
and problems (never modified), so changing a threshold and rerunning is safe.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.curation.near_duplicates import Embedder, mark_duplicates
from rmforge.generators.embeddings import PACKAGED_EMBEDDER, embed, embedding_dtype
from rmforge.schemas.config import CurationConfig
from rmforge.schemas.records import ProblemCuration, RolloutCuration, stable_hash, utc_now
from rmforge.schemas.tables import TABLES, arrow_schema
from rmforge.store import Store
from rmforge.verifiers.answers import extract_final_answer

# Texts embedded per store write: a crash loses at most one chunk of work.
EMBED_CHUNK = 1024
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def text_hash(text: str) -> str:
    return stable_hash("text", text, length=32)


# ---------------------------------------------------------------- the embedding cache


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


# ---------------------------------------------------------------- rollouts


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
    problem_of = {row["rollout_id"]: row["problem_id"] for row in rollouts}
    marks = mark_duplicates(
        sorted(rollouts, key=lambda r: (r["problem_id"], r["rollout_id"])),
        key=lambda r: r["rollout_id"],
        text=lambda r: r["response"],
        scope=lambda r: r["problem_id"],
        group=lambda r: (r["problem_id"], r.get("predicted_answer") or extract_final_answer(r["response"])),
        contaminated=lambda r: r["problem_id"] in contaminated,
        exact=config.exact_dedupe,
        near=config.near_dedupe,
        threshold=config.near_duplicate_threshold,
        vectors_for=vectors_for or (lambda texts: embed(texts, config)),
    )
    return [
        RolloutCuration(
            rollout_id=rollout_id,
            problem_id=problem_of[rollout_id],
            status=mark.status,
            duplicate_of=mark.duplicate_of,
            similarity=mark.similarity,
            run_id=run_id,
        )
        for rollout_id, mark in marks.items()
    ]


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
    marks = mark_duplicates(
        sorted(problems, key=lambda p: p["problem_id"]),
        key=lambda p: p["problem_id"],
        text=lambda p: p["question"],
        scope=lambda p: None,  # the whole store
        group=lambda p: tuple(sorted(_NUMBER.findall(p["question"]))),
        contaminated=lambda p: p["problem_id"] in contaminated,
        exact=config.exact_dedupe,
        near=config.near_dedupe,
        threshold=config.problem_near_duplicate_threshold,
        vectors_for=vectors_for or (lambda texts: embed(texts, config)),
    )
    return [
        ProblemCuration(
            problem_id=problem_id,
            status=mark.status,
            duplicate_of=mark.duplicate_of,
            similarity=mark.similarity,
            run_id=run_id,
        )
        for problem_id, mark in marks.items()
    ]


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
