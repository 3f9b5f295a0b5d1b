"""The end-to-end pipeline: generate -> annotate -> curate (-> export)."""

from __future__ import annotations

from prefect import flow

from flows.annotate import annotate
from flows.curate import curate
from flows.export import export
from flows.generate import generate
from schemas.config import PipelineConfig
from tasks.runs import publish_report, record_run_end, mark_run_failed, record_run_start
from tasks.store import resolve_db_path


@flow(name="pipeline", log_prints=True, on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def pipeline(config: PipelineConfig | None = None, db: str | None = None, export_dir: str | None = None) -> dict:
    config = config or PipelineConfig()
    db = str(resolve_db_path(db))
    run_id = record_run_start(db, "pipeline", config)
    summary = {
        "generate": generate(config, db),
        "annotate": annotate(db, config.annotators, config.annotator_options, config.generator, config.batch_size),
        "curate": curate(db, config.annotators, config.curation),
    }
    if export_dir:
        summary["export"] = export(db, export_dir)
    record_run_end(db, run_id, "pipeline", "completed", summary)
    publish_report(db, "pipeline", run_id, summary)
    return summary


if __name__ == "__main__":  # the vLLM engine starts a child process: keep this guard
    pipeline()
