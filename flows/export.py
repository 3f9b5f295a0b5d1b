"""Stage 7: write the curated datasets in training formats."""

from __future__ import annotations

from prefect import flow

from tasks.export import export_datasets


@flow(name="export", log_prints=True)
def export(db: str, out_dir: str, datasets: list[str] | None = None) -> dict:
    return export_datasets(db, out_dir, datasets)
