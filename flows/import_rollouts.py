"""Import existing rollouts (JSONL/Parquet) and split them into steps."""

from __future__ import annotations

from prefect import flow, get_run_logger

from schemas.config import StepSplitConfig
from tasks.rollouts import import_rollouts as import_rollout_file
from tasks.runs import publish_report, record_run_end, mark_run_failed, record_run_start


@flow(name="import-rollouts", log_prints=True, on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def import_rollouts(path: str, db: str, steps: StepSplitConfig | None = None) -> dict:
    run_id = record_run_start(db, "import-rollouts", {"path": path})
    summary = import_rollout_file(db, path, run_id, steps or StepSplitConfig())
    if summary["quarantined"]:
        get_run_logger().warning("%d malformed rows quarantined (see the quarantine table)", summary["quarantined"])
    record_run_end(db, run_id, "import-rollouts", "completed", summary)
    publish_report(db, "import-rollouts", run_id, summary)
    return summary
