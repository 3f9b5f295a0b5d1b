"""Stage 1-3: problems in, rollouts sampled, responses split into steps."""

from __future__ import annotations

from datetime import timezone

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from rmforge.flows.progress import Progress
from rmforge.flows.runs import tracked_run
from rmforge.schemas.config import PipelineConfig
from rmforge.tasks import chunks
from rmforge.tasks.problems import load_problems, store_problems
from rmforge.tasks.rollouts import generate_rollouts


def resolve_seed(config: PipelineConfig) -> tuple[PipelineConfig, str]:
    """The config with a concrete problem seed, and where the seed came from.

    `seed: scheduled` draws it from this flow run's scheduled start time (YYYYMMDDHHMM, UTC),
    so each run of a schedule generates new problems instead of the same ids again.
    """
    if config.problems.seed != "scheduled":
        return config, f"seed {config.problems.seed} from the config"
    scheduled = flow_run.scheduled_start_time.astimezone(timezone.utc)
    seed = int(scheduled.strftime("%Y%m%d%H%M"))
    problems = config.problems.model_copy(update={"seed": seed})
    return (
        config.model_copy(update={"problems": problems}),
        f"seed {seed} from the scheduled time {scheduled.isoformat()}",
    )


@flow(name="generate", log_prints=True)
def generate(config: PipelineConfig, db: str) -> dict:
    logger = get_run_logger()
    config, seed_origin = resolve_seed(config)
    logger.info("problems: %s", seed_origin)
    with tracked_run(db, "generate", config) as run:
        loaded = load_problems(config.problems, run.run_id)
        stored = store_problems(db, loaded)
        logger.info(
            "%d problems (%d new), %d quarantined", len(loaded.problems), stored["problems"], stored["quarantined"]
        )

        n = config.sampling.n
        per_batch = max(1, config.batch_size // n)
        added = {"rollouts": 0, "steps": 0, "quarantined": 0}
        with Progress("generating rollouts", len(loaded.problems) * n) as progress:
            for done, batch in enumerate(chunks(loaded.problems, per_batch), start=1):
                with progress.track_generation(completions_are_items=True):
                    written = generate_rollouts(db, batch, config.generator, config.sampling, run.run_id, config.steps)
                added = {key: added[key] + written[key] for key in added}
                progress.finish_batch(min(done * per_batch, len(loaded.problems)) * n)
                logger.info("rollouts: %d new so far", added["rollouts"])
        run.summary = {
            "seed": seed_origin,
            "problems": len(loaded.problems),
            "new_problems": stored["problems"],
            "quarantined": stored["quarantined"] + added["quarantined"],
            "new_rollouts": added["rollouts"],
            "new_steps": added["steps"],
        }
    return run.summary
