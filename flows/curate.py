"""Stage 5-6: consensus, deduplication, and the curated datasets."""

from __future__ import annotations

from prefect import flow

from schemas.config import CurationConfig
from tasks.curate import compute_step_consensus
from tasks.decontaminate import decontaminate_problems
from tasks.dedupe import deduplicate_problems, deduplicate_rollouts
from tasks.datasets import build_datasets
from tasks.runs import publish_report, record_run_end, mark_run_failed, record_run_start


@flow(name="curate", log_prints=True, on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def curate(db: str, annotators: list[str], config: CurationConfig | None = None) -> dict:
    config = config or CurationConfig()
    run_id = record_run_start(db, "curate", {"annotators": annotators, "curation": config.model_dump()})
    summary = {
        "consensus": compute_step_consensus(db, annotators, config, run_id),
        # Before dedupe: it marks contaminated problems and their rollouts.
        "decontamination": decontaminate_problems(db, config, run_id),
        "dedupe": deduplicate_rollouts(db, config, run_id),
        "problem_dedupe": deduplicate_problems(db, config, run_id),
        "datasets": build_datasets(db, config.max_pairs_per_problem, run_id),
    }
    record_run_end(db, run_id, "curate", "completed", summary)
    publish_report(db, "curate", run_id, summary)
    return summary
