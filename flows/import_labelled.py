"""Import human-labelled solutions (ProcessBench, PRM800K): rollouts, exact steps, `human` labels."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from rmforge.flows.progress import Progress
from rmforge.flows.runs import tracked_run
from rmforge.problems.records import count_records
from rmforge.tasks.rollouts import import_labelled as import_labelled_file


@flow(name="import-labelled", log_prints=True)
def import_labelled(
    path: str, db: str, format: str = "processbench", gold_path: str | None = None, neutral: str = "correct"
) -> dict:
    with tracked_run(db, "import-labelled", {"path": path, "format": format, "gold_path": gold_path}) as run:
        with Progress(f"importing {format}", count_records(Path(path)), unit="rows") as progress:
            run.summary = import_labelled_file(
                db, path, format, run.run_id, gold_path, neutral, on_rows=progress.finish_batch
            )
        if run.summary["quarantined"]:
            get_run_logger().warning(
                "%d malformed rows quarantined (see the quarantine table)", run.summary["quarantined"]
            )
    return run.summary
