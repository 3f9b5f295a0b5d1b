"""Curation: step consensus across annotators (deduplication: tasks/dedupe.py).

The table is derived: each curation run recomputes it from the raw labels
(which are never modified), so changing the rule and rerunning is always safe.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import CurationConfig
from schemas.records import StepConsensus, canonical_json
from tasks.store import Store

# Annotators whose score is an estimated success probability (the soft label).
SOFT_LABEL_ANNOTATORS = ("mc", "mc_binary")


# ---------------------------------------------------------------- consensus

def decide_step(
    votes: dict[str, str], config: CurationConfig
) -> tuple[str, bool]:
    """(verdict, agreed) for one step from {annotator: verdict}.

    `unknown` votes abstain. A step is agreed when at least one annotator is
    decisive, no two decisive annotators disagree, every required annotator is
    decisive and, under `unanimous`, nobody abstained.
    """
    decisive = {a: v for a, v in votes.items() if v != "unknown"}
    if not decisive:
        return "unknown", False
    if any(votes.get(a, "unknown") == "unknown" for a in config.required_annotators):
        return "unknown", False
    if config.consensus == "unanimous" and len(decisive) < len(votes):
        return "unknown", False
    verdicts = set(decisive.values())
    if len(verdicts) > 1:
        return "unknown", False
    return verdicts.pop(), True


def latest_step_labels(store: Store, annotators: Sequence[str]) -> list[dict[str, Any]]:
    """The newest label per (rollout, step, annotator) for the given annotators."""
    return store.rows(
        """
        SELECT rollout_id, step_index, annotator, verdict, score FROM step_labels
        WHERE annotator IN (SELECT UNNEST(?))
        QUALIFY row_number() OVER (
            PARTITION BY rollout_id, step_index, annotator ORDER BY labeled_at DESC) = 1
        """,
        [list(annotators)],
    )


def build_consensus(
    labels: Iterable[dict[str, Any]], config: CurationConfig, run_id: str
) -> list[StepConsensus]:
    by_step: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in labels:
        by_step[(row["rollout_id"], row["step_index"])][row["annotator"]] = row
    result = []
    for (rollout_id, step_index), rows in sorted(by_step.items()):
        votes = {a: r["verdict"] for a, r in rows.items()}
        verdict, agreed = decide_step(votes, config)
        soft = [rows[a]["score"] for a in SOFT_LABEL_ANNOTATORS if a in rows and rows[a]["score"] is not None]
        result.append(
            StepConsensus(
                rollout_id=rollout_id,
                step_index=step_index,
                verdict=verdict,
                agreed=agreed,
                score=soft[0] if soft else None,
                annotators=sorted(votes),
                votes=canonical_json(votes),
                run_id=run_id,
            )
        )
    return result


@task(name="build-step-consensus", cache_policy=NO_CACHE)
def compute_step_consensus(db: str, annotators: list[str], config: CurationConfig, run_id: str) -> dict[str, int]:
    with Store(db) as store:
        consensus = build_consensus(latest_step_labels(store, annotators), config, run_id)
        store.begin()
        store.execute("DELETE FROM step_consensus")
        store.write("step_consensus", consensus)
        store.commit()
    agreed = sum(c.agreed for c in consensus)
    return {"steps": len(consensus), "agreed": agreed, "excluded": len(consensus) - agreed}
