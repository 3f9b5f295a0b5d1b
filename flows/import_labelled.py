"""Import human-labelled solutions (ProcessBench, PRM800K): rollouts, exact steps, `human` labels."""

from __future__ import annotations

from prefect import flow, get_run_logger

from tasks.rollouts import import_labelled as import_labelled_file
from tasks.runs import mark_run_failed, publish_report, record_run_end, record_run_start


@flow(name="import-labelled", log_prints=True, on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def import_labelled(
    path: str, db: str, format: str = "processbench", gold_path: str | None = None, neutral: str = "correct"
) -> dict:
    run_id = record_run_start(db, "import-labelled", {"path": path, "format": format, "gold_path": gold_path})
    summary = import_labelled_file(db, path, format, run_id, gold_path, neutral)
    if summary["quarantined"]:
        get_run_logger().warning("%d malformed rows quarantined (see the quarantine table)", summary["quarantined"])
    record_run_end(db, run_id, "import-labelled", "completed", summary)
    publish_report(db, "import-labelled", run_id, summary)
    return summary
