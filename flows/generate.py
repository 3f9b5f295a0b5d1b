"""Stage 1-3: problems in, rollouts sampled, responses split into steps."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows import chunks
from schemas.config import PipelineConfig
from tasks.problems import load_problems
from tasks.rollouts import generate_rollouts
from tasks.runs import Progress, publish_report, record_run_end, mark_run_failed, record_run_start, store_problems


@flow(name="generate", log_prints=True, on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def generate(config: PipelineConfig, db: str) -> dict:
    logger = get_run_logger()
    run_id = record_run_start(db, "generate", config)
    loaded = load_problems(config.problems, run_id)
    stored = store_problems(db, loaded)
    logger.info("%d problems (%d new), %d quarantined", len(loaded.problems), stored["problems"], stored["quarantined"])

    per_batch = max(1, config.batch_size // config.sampling.n)
    progress = Progress(f"sampling {config.sampling.n} rollouts for {len(loaded.problems)} problems")
    added = {"rollouts": 0, "steps": 0, "quarantined": 0}
    for done, batch in enumerate(chunks(loaded.problems, per_batch), start=1):
        written = generate_rollouts(db, batch, config.generator, config.sampling, run_id, config.steps)
        added = {key: added[key] + written[key] for key in added}
        progress.update(min(done * per_batch, len(loaded.problems)), len(loaded.problems))
        logger.info("rollouts: %d new so far", added["rollouts"])
    summary = {"problems": len(loaded.problems), "new_problems": stored["problems"],
               "quarantined": stored["quarantined"] + added["quarantined"], "new_rollouts": added["rollouts"],
               "new_steps": added["steps"]}
    record_run_end(db, run_id, "generate", "completed", summary)
    publish_report(db, "generate", run_id, summary)
    return summary
