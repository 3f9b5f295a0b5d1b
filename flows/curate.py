"""Stage 5-6: consensus, decontamination, deduplication, and the curated datasets."""

from __future__ import annotations

from prefect import flow

from rmforge.flows.progress import Progress
from rmforge.flows.runs import tracked_run
from rmforge.schemas.config import CurationConfig
from rmforge.tasks.consensus import compute_consensus
from rmforge.tasks.datasets import build_datasets
from rmforge.tasks.decontaminate import decontaminate_problems
from rmforge.tasks.dedupe import deduplicate_problems, deduplicate_rollouts
from rmforge.tasks.run_report import write_run_report


@flow(name="curate", log_prints=True)
def curate(db: str, annotators: list[str], config: CurationConfig | None = None) -> dict:
    config = config or CurationConfig()
    with tracked_run(db, "curate", {"annotators": annotators, "curation": config.model_dump()}) as run:
        with Progress("curating", 5, unit="stages") as progress:
            run.summary["consensus"] = compute_consensus(db, annotators, config, run.run_id)
            progress.finish_batch(1)
            # Before dedupe: it marks contaminated problems and their rollouts.
            run.summary["decontamination"] = decontaminate_problems(db, config, run.run_id)
            progress.finish_batch(2)
            run.summary["dedupe"] = deduplicate_rollouts(db, config, run.run_id)
            progress.finish_batch(3)
            run.summary["problem_dedupe"] = deduplicate_problems(db, config, run.run_id)
            progress.finish_batch(4)
            run.summary["datasets"] = build_datasets(db, config.max_pairs_per_problem, run.run_id)
            progress.finish_batch(5)
        run.summary["report"] = write_run_report(db, run.run_id)
    return run.summary
