"""Evaluate annotators and consensus policies against human labels (ProcessBench format).

Imports the file (solutions, exact steps, human first errors) into a store, labels it
with each requested annotator (timed), scores every annotator alone and every policy
over all of them, and writes a markdown report, a PNG chart and metrics.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from rmforge.flows.annotate import annotate
from rmforge.flows.import_labelled import import_labelled
from rmforge.schemas.config import CONSENSUS_POLICIES, GeneratorConfig
from rmforge.tasks.evaluate import labelled_rollout_ids, score_labels, write_eval_report
from rmforge.tasks.rollouts import imported_nothing


@flow(name="evaluate", log_prints=True)
def evaluate(
    path: str,
    annotators: list[str],
    out_dir: str,
    db: str | None = None,
    policies: list[str] | None = None,
    gold_path: str | None = None,
    annotator_options: dict[str, dict[str, Any]] | None = None,
    default_generator: GeneratorConfig | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    db = db or str(Path(out_dir) / "eval.duckdb")
    imported = import_labelled(path, db, "processbench", gold_path)
    if imported_nothing(imported):  # a file of another format: nothing to label or score, no report
        return {"imported": imported, "scores": [], "files": {}, "db": db}
    rollout_ids = labelled_rollout_ids(path)
    seconds: dict[str, float] = {}
    for name in annotators:
        started = time.perf_counter()
        annotate(db, [name], annotator_options, default_generator, batch_size)
        seconds[name] = round(time.perf_counter() - started, 2)
    results = score_labels(db, rollout_ids, annotators, list(policies or CONSENSUS_POLICIES), seconds)
    written = write_eval_report(out_dir, Path(path).name, results)
    if flow_run.id:
        create_markdown_artifact(written["markdown"], key="rmforge-eval-report", description="rmforge eval")
        create_table_artifact(
            [{k: v for k, v in r.items() if k != "judged"} for r in results],
            key="rmforge-eval-scores",
            description="scores per annotator and policy",
        )
    return {
        "imported": imported,
        "scores": results,
        "files": {k: v for k, v in written.items() if k != "markdown"},
        "db": db,
    }
