"""Where an export's data came from: the runs, models, problem sources and annotators behind the kept
rollouts, as the dataset card (rmforge.exports.card) and `rmforge_config.yaml` tell it."""

from __future__ import annotations

import json
from typing import Any

from rmforge.exports.datasets import outcome_annotators
from rmforge.schemas.exports import CRITIQUE_ANNOTATOR
from rmforge.store import Store


def curation_settings(store: Store) -> dict[str, Any] | None:
    """The latest curate run's config: {"annotators": [...], "curation": {...}}."""
    rows = store.execute("SELECT config FROM runs WHERE flow = 'curate' ORDER BY started_at DESC LIMIT 1")
    return json.loads(rows[0][0]) if rows else None


_KEPT_ROLLOUTS = """
    SELECT r.* FROM rollouts r LEFT JOIN rollout_curation c USING (rollout_id)
    WHERE coalesce(c.status, 'kept') = 'kept'"""


def _labels_of_kept(table: str) -> str:
    return f"SELECT * FROM {table} WHERE rollout_id IN (SELECT rollout_id FROM kept)"


def export_provenance(store: Store) -> dict[str, Any]:
    """What the card says about where the data came from: every exported row rests on kept rollouts."""
    step_annotators = [
        row[0] for row in store.execute("SELECT DISTINCT UNNEST(annotators) FROM process_examples ORDER BY 1")
    ]
    critics = store.rows(  # those of the exported critiques
        "SELECT annotator, model, count(*) AS critiques FROM critiques WHERE annotator = ? "
        "GROUP BY ALL ORDER BY annotator, model",
        [CRITIQUE_ANNOTATOR],
    )
    generation = store.rows(f"""
        WITH kept AS ({_KEPT_ROLLOUTS})
        SELECT model, generator, sampling, count(*) AS rollouts, list(DISTINCT run_id ORDER BY run_id) AS runs
        FROM kept GROUP BY ALL ORDER BY rollouts DESC, model, generator, sampling""")
    sources = store.rows(f"""
        WITH kept AS ({_KEPT_ROLLOUTS})
        SELECT p.source, count(DISTINCT p.problem_id) AS problems FROM kept JOIN problems p USING (problem_id)
        GROUP BY ALL ORDER BY problems DESC, source""")
    annotators = store.rows(f"""
        WITH kept AS ({_KEPT_ROLLOUTS}), labels AS (
            SELECT annotator, annotator_version, config_hash, model, run_id, 'step' AS kind
            FROM ({_labels_of_kept("step_labels")})
            UNION ALL
            SELECT annotator, annotator_version, config_hash, model, run_id, 'outcome'
            FROM ({_labels_of_kept("outcome_labels")}))
        SELECT annotator, annotator_version AS version, config_hash,
               list(DISTINCT model ORDER BY model) FILTER (model IS NOT NULL) AS models,
               count(*) FILTER (kind = 'step') AS step_labels, count(*) FILTER (kind = 'outcome') AS outcome_labels,
               list(DISTINCT run_id ORDER BY run_id) AS runs
        FROM labels GROUP BY ALL ORDER BY annotator, version, config_hash""")
    runs = store.rows(f"""
        WITH kept AS ({_KEPT_ROLLOUTS}), ids AS (
            SELECT run_id FROM kept
            UNION SELECT run_id FROM ({_labels_of_kept("step_labels")})
            UNION SELECT run_id FROM ({_labels_of_kept("outcome_labels")})
            UNION SELECT run_id FROM ({_labels_of_kept("critiques")})
            UNION SELECT run_id FROM process_examples
            UNION SELECT run_id FROM preference_pairs
            UNION SELECT run_id FROM (SELECT run_id FROM runs WHERE flow = 'curate' ORDER BY started_at DESC LIMIT 1))
        SELECT ids.run_id, r.flow, r.status, r.started_at, r.config
        FROM ids LEFT JOIN runs r USING (run_id) ORDER BY r.started_at NULLS LAST, ids.run_id""")
    for run in runs:
        run["config"] = json.loads(run["config"]) if run["config"] else None
    deciders = outcome_annotators(store)
    behind_labels = set(step_annotators) | set(deciders) | {row["annotator"] for row in critics}
    return {
        "database": store.location.name,
        "curation": curation_settings(store),
        "step_annotators": step_annotators,
        "outcome_annotators": list(deciders),
        "critics": critics,
        "generation": generation,
        "sources": sources,
        "annotators": [row for row in annotators if row["annotator"] in behind_labels],
        "annotator_options": _annotator_options(runs),
        "runs": runs,
    }


def _annotator_options(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """{annotator: its options in the latest annotate run that ran it} (runs in start order)."""
    options: dict[str, Any] = {}
    for run in runs:
        if run["flow"] == "annotate" and run["config"]:
            given = run["config"].get("options") or {}
            options.update({name: given.get(name, {}) for name in run["config"].get("annotators", [])})
    return options
