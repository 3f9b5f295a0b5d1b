"""The end-to-end pipeline: generate -> annotate -> curate (-> export)."""

from __future__ import annotations

from contextlib import nullcontext

from prefect import flow

from rmforge.flows.annotate import annotate
from rmforge.flows.concurrency import GPU_LIMIT, exclusive
from rmforge.flows.curate import curate
from rmforge.flows.export import export
from rmforge.flows.generate import generate, resolve_seed
from rmforge.flows.runs import tracked_run
from rmforge.schemas.config import PipelineConfig
from rmforge.store import resolve_store


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig | None = None, db: str | None = None, export_dir: str | None = None) -> dict:
    config = config or PipelineConfig()
    db = resolve_store(db).url
    # The seed comes from the pipeline's schedule, not the generate subflow's own start.
    config, seed_origin = resolve_seed(config)
    # One vLLM engine stage at a time on the machine's GPU (deployment runs, see flows.concurrency.exclusive).
    gpu = exclusive(GPU_LIMIT) if config.generator.backend == "vllm" else nullcontext()
    with tracked_run(db, "pipeline", config) as run:
        run.summary["seed"] = seed_origin
        with gpu:
            run.summary["generate"] = generate(config, db)
            run.summary["annotate"] = annotate(
                db, config.annotators, config.annotator_options, config.generator, config.batch_size, config.compute
            )
        run.summary["curate"] = curate(db, config.annotators, config.curation)
        if export_dir:
            run.summary["export"] = export(db, export_dir, settings=config.export)
    return run.summary


if __name__ == "__main__":  # the vLLM engine starts a child process: keep this guard
    pipeline()
