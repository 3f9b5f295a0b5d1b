"""Import existing rollouts (JSONL/JSON/Parquet) with their steps."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from rmforge.flows.progress import Progress
from rmforge.flows.runs import tracked_run
from rmforge.problems.records import count_records
from rmforge.schemas.config import StepSplitConfig
from rmforge.tasks.rollouts import import_rollouts as import_rollout_file


@flow(name="import-rollouts", log_prints=True)
def import_rollouts(path: str, db: str, steps: StepSplitConfig | None = None) -> dict:
    with tracked_run(db, "import-rollouts", {"path": path}) as run:
        with Progress("importing rollouts", count_records(Path(path)), unit="rows") as progress:
            run.summary = import_rollout_file(
                db, path, run.run_id, steps or StepSplitConfig(), on_rows=progress.finish_batch
            )
        if run.summary["quarantined"]:
            get_run_logger().warning(
                "%d malformed rows quarantined (see the quarantine table)", run.summary["quarantined"]
            )
    return run.summary
