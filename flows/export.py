"""Stage 7: write the curated datasets in training formats."""

from __future__ import annotations

from prefect import flow

from rmforge.tasks.export import check_export, export_datasets
from rmforge.tasks.runs import Progress, tracked_run


@flow(name="export", log_prints=True)
def export(db: str, out_dir: str, datasets: list[str] | None = None) -> dict:
    datasets = check_export(db, out_dir, datasets)  # before the run is recorded: a missing db stays missing
    with tracked_run(db, "export", {"out_dir": out_dir, "datasets": datasets}) as run:
        with Progress("exporting", 1, unit="exports") as progress:
            run.summary = export_datasets(db, out_dir, datasets, run.run_id)
            progress.finish_batch(1)
    return run.summary
