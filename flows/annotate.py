"""Stage 4: label every pending rollout with each requested annotator."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows import chunks
from schemas.config import GeneratorConfig
from tasks.annotate import annotate_batch, check_annotator, make_annotator, pending_rollout_ids
from tasks.runs import Progress, publish_report, record_run_end, mark_run_failed, record_run_start


@flow(name="annotate", log_prints=True, on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def annotate(
    db: str,
    annotators: list[str],
    annotator_options: dict[str, dict[str, Any]] | None = None,
    default_generator: GeneratorConfig | None = None,
    batch_size: int = 256,
) -> dict:
    logger = get_run_logger()
    options = annotator_options or {}
    generator = default_generator or GeneratorConfig()
    run_id = record_run_start(db, "annotate", {"annotators": annotators, "options": options})
    summary: dict[str, Any] = {}
    for name in annotators:
        annotator = make_annotator(name, options.get(name), generator)  # once per flow run
        unavailable = check_annotator(annotator)
        if unavailable:
            logger.warning("annotator %s is unavailable here: %s", name, unavailable)
            summary[name] = {"status": "unavailable", "reason": unavailable}
            continue
        pending = pending_rollout_ids(db, annotator)
        progress = Progress(f"{name}: labelling {len(pending)} rollouts")
        written: dict[str, int] = {"rollouts": len(pending)}
        for done, batch in enumerate(chunks(pending, batch_size), start=1):
            for table, rows in annotate_batch(db, annotator, batch, run_id).items():
                written[table] = written.get(table, 0) + rows
            progress.update(min(done * batch_size, len(pending)), len(pending))
        logger.info("%s: %s", name, written)
        summary[name] = {"status": "done", **written}
    record_run_end(db, run_id, "annotate", "completed", summary)
    publish_report(db, "annotate", run_id, summary)
    return summary
