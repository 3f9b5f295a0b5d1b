"""The end-to-end pipeline: generate -> annotate -> curate (-> export)."""

from __future__ import annotations

from prefect import flow

from flows.annotate import annotate
from flows.curate import curate
from flows.export import export
from flows.generate import generate
from schemas.config import PipelineConfig
from tasks.runs import tracked_run
from tasks.store import resolve_db_path


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig | None = None, db: str | None = None, export_dir: str | None = None) -> dict:
    config = config or PipelineConfig()
    db = str(resolve_db_path(db))
    with tracked_run(db, "pipeline", config) as run:
        run.summary["generate"] = generate(config, db)
        run.summary["annotate"] = annotate(db, config.annotators, config.annotator_options, config.generator,
                                           config.batch_size)
        run.summary["curate"] = curate(db, config.annotators, config.curation)
        if export_dir:
            run.summary["export"] = export(db, export_dir)
    return run.summary


if __name__ == "__main__":  # the vLLM engine starts a child process: keep this guard
    pipeline()
