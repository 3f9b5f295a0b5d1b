"""Run one annotator over one batch of rollouts and store its labels.

A rollout is done for an annotator configuration once its `annotator_costs` row
exists; labels and that marker are written in one transaction, so a crash never
leaves a half-labelled rollout and a rerun only labels what is missing.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from annotators import build_annotator
from annotators.base import AnnotationInput, Annotator
from schemas.config import GeneratorConfig
from schemas.records import Problem, Rollout
from tasks.store import Store


def make_annotator(name: str, options: dict[str, Any] | None, default_generator: GeneratorConfig) -> Annotator:
    return build_annotator(name, options or {}, default_generator=default_generator)


@task(name="check-annotator", cache_policy=NO_CACHE)
def check_annotator(name: str, options: dict[str, Any] | None, default_generator: GeneratorConfig) -> str | None:
    """None when the annotator can run here, else why not (e.g. no `lean` binary)."""
    return make_annotator(name, options, default_generator).availability()


@task(name="find-pending-rollouts", cache_policy=NO_CACHE)
def pending_rollout_ids(
    db: str,
    name: str,
    options: dict[str, Any] | None,
    default_generator: GeneratorConfig,
    limit_to: list[str] | None = None,
) -> list[str]:
    """Rollouts that this annotator configuration has not labelled yet, in a stable order."""
    annotator = make_annotator(name, options, default_generator)
    sql = (
        "SELECT r.rollout_id FROM rollouts r WHERE NOT EXISTS (SELECT 1 FROM annotator_costs c "
        "WHERE c.rollout_id = r.rollout_id AND c.annotator = ? AND c.config_hash = ?)"
    )
    params: list[Any] = [annotator.name, annotator.config_hash]
    if limit_to is not None:
        sql += " AND r.rollout_id IN (SELECT UNNEST(?))"
        params.append(limit_to)
    with Store(db) as store:
        return [row["rollout_id"] for row in store.rows(sql + " ORDER BY r.rollout_id", params)]


def load_inputs(store: Store, rollout_ids: list[str]) -> list[AnnotationInput]:
    rollouts = store.records(
        Rollout, "SELECT * FROM rollouts WHERE rollout_id IN (SELECT UNNEST(?)) ORDER BY rollout_id", [rollout_ids]
    )
    problem_ids = sorted({r.problem_id for r in rollouts})
    problems = {
        p.problem_id: p
        for p in store.records(Problem, "SELECT * FROM problems WHERE problem_id IN (SELECT UNNEST(?))", [problem_ids])
    }
    steps: dict[str, list[str]] = {}
    for row in store.rows(
        "SELECT rollout_id, text FROM steps WHERE rollout_id IN (SELECT UNNEST(?)) ORDER BY rollout_id, step_index",
        [rollout_ids],
    ):
        steps.setdefault(row["rollout_id"], []).append(row["text"])
    missing = [r.rollout_id for r in rollouts if r.problem_id not in problems]
    if missing:
        raise ValueError(f"rollouts {missing[:5]} reference problems that are not in the store")
    return [AnnotationInput(problem=problems[r.problem_id], rollout=r, steps=steps.get(r.rollout_id, [])) for r in rollouts]


@task(name="annotate-batch", cache_policy=NO_CACHE)
def annotate_batch(
    db: str,
    annotator_name: str,
    options: dict[str, Any] | None,
    default_generator: GeneratorConfig,
    rollout_ids: list[str],
    run_id: str,
) -> dict[str, int]:
    """Label one batch with one annotator; returns how many rows of each kind were written."""
    annotator = make_annotator(annotator_name, options, default_generator)
    with Store(db) as store:
        items = load_inputs(store, rollout_ids)
    output = annotator.annotate(items, run_id)
    costed = {c.rollout_id for c in output.costs}
    output.costs.extend(annotator.cost(item, 0, run_id) for item in items if item.rollout.rollout_id not in costed)
    with Store(db) as store:
        store.begin()
        written = {
            "step_labels": store.write("step_labels", output.step_labels, on_conflict="replace"),
            "outcome_labels": store.write("outcome_labels", output.outcome_labels, on_conflict="replace"),
            "critiques": store.write("critiques", output.critiques, on_conflict="replace"),
            "annotator_costs": store.write("annotator_costs", output.costs, on_conflict="replace"),
        }
        store.commit()
    return written
