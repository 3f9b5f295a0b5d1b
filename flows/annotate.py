"""Stage 4: label every pending rollout with each requested annotator."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from annotators import annotator_class
from flows import chunks
from schemas.config import GeneratorConfig
from tasks.annotate import annotate_batch, check_annotator, make_annotator, pending_rollout_ids
from tasks.runs import Progress, tracked_run


@flow(name="annotate", log_prints=True)
def annotate(
    db: str,
    annotators: list[str],
    annotator_options: dict[str, dict[str, Any]] | None = None,
    default_generator: GeneratorConfig | None = None,
    batch_size: int = 256,
) -> dict:
    logger = get_run_logger()
    for name in annotators:  # an unknown name fails the run before any annotator works
        annotator_class(name)
    options = annotator_options or {}
    generator = default_generator or GeneratorConfig()
    with tracked_run(db, "annotate", {"annotators": annotators, "options": options}) as run:
        for name in annotators:
            annotator = make_annotator(name, options.get(name), generator)  # once per flow run
            unavailable = check_annotator(annotator)
            if unavailable:
                logger.warning("annotator %s is unavailable here: %s", name, unavailable)
                run.summary[name] = {"status": "unavailable", "reason": unavailable}
                continue
            pending = pending_rollout_ids(db, annotator)
            written: dict[str, int] = {"rollouts": len(pending)}
            with Progress(f"annotating with {name}", len(pending)) as progress:
                for done, batch in enumerate(chunks(pending, batch_size), start=1):
                    with progress.track_generation():
                        counts = annotate_batch(db, annotator, batch, run.run_id)
                    for table, rows in counts.items():
                        written[table] = written.get(table, 0) + rows
                    progress.finish_batch(min(done * batch_size, len(pending)))
            logger.info("%s: %s", name, written)
            run.summary[name] = {"status": "done", **written}
    return run.summary
