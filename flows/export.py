"""Stage 7: write the curated datasets in training formats."""

from __future__ import annotations

from prefect import flow

from tasks.export import check_export, export_datasets
from tasks.runs import mark_run_failed, publish_report, record_run_end, record_run_start


@flow(name="export", log_prints=True, on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def export(db: str, out_dir: str, datasets: list[str] | None = None) -> dict:
    datasets = check_export(db, out_dir, datasets)  # before the run is recorded: a missing db stays missing
    run_id = record_run_start(db, "export", {"out_dir": out_dir, "datasets": datasets})
    summary = export_datasets(db, out_dir, datasets, run_id)
    record_run_end(db, run_id, "export", "completed", summary)
    publish_report(db, "export", run_id, summary)
    return summary
