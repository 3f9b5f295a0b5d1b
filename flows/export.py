"""Stage 7: write the curated datasets in training formats (and push them to the Hub)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from rmforge.exports.files import check_export
from rmforge.flows.progress import Progress
from rmforge.flows.runs import tracked_run
from rmforge.schemas.config import ExportConfig
from rmforge.tasks.export import export_datasets
from rmforge.tasks.hub import check_push, push_export


@flow(name="export", log_prints=True)
def export(db: str, out_dir: str, datasets: list[str] | None = None, settings: ExportConfig | None = None) -> dict:
    settings = settings or ExportConfig()
    datasets = check_export(db, out_dir, datasets)  # before the run is recorded: a missing db stays missing
    if settings.push_to_hub:
        check_push(settings.push_to_hub)
    config = {"out_dir": out_dir, "datasets": datasets, "settings": settings.model_dump()}
    with tracked_run(db, "export", config) as run:
        with Progress("exporting", 1, unit="exports") as progress:
            summary: dict[str, Any] = export_datasets(db, out_dir, datasets, run.run_id, settings)
            run.summary = summary
            progress.finish_batch(1)
        if settings.push_to_hub:
            run.summary["hub_commit"] = push_export(
                out_dir, settings.push_to_hub, settings.private, settings.hub_timeout_s, run.run_id
            )
    return run.summary
