"""Stage 4: label every pending rollout with each requested annotator.

Batches fan out as tasks on the run's task runner (`compute`: threads, Dask or Ray
workers), while this flow's own process reads the batches' inputs (a window of batches at a
time) and writes their labels, as Arrow: the workers make the annotator's records.
Workers only compute, so they need no access to the store: a single-file DuckDB store,
which takes one writing process at a time, works with workers in other processes or on
other machines, and each batch's labels and done markers are still one transaction here.
The flow keeps one store open for all its batches (rmforge.store.held: opening and closing
a store per batch cost about as much as the batch's reads and writes), and hands a DuckDB file to a
process that waits for it between two batch steps.

Runs that share a store split the pending rollouts: batches are claimed as they are labelled
(several at once while no other run claims), and a run ends when what is still pending is
claimed by other live runs (see `tasks.annotate`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from prefect import flow, get_run_logger

from rmforge.annotators import annotator_class
from rmforge.annotators.base import Annotator
from rmforge.flows.progress import Progress
from rmforge.flows.runs import tracked_run
from rmforge.flows.task_runners import task_runner
from rmforge.schemas.config import ComputeConfig, GeneratorConfig
from rmforge.store.held import HeldStore
from rmforge.tasks.annotate import (
    InputReader,
    LabelTables,
    check_annotator,
    claimed_batches,
    forget_annotator_errors,
    garbage_collection_for_labelling,
    label_batch,
    make_annotator,
    pending_rollout_ids,
    release_claims,
    write_labels,
)


@flow(name="annotate", log_prints=True)
def annotate(
    db: str,
    annotators: list[str],
    annotator_options: dict[str, dict[str, Any]] | None = None,
    default_generator: GeneratorConfig | None = None,
    batch_size: int = 256,
    compute: ComputeConfig | None = None,
    retry_errors: bool = False,
) -> dict:
    """`retry_errors`: first make the rollouts labelled `unknown` for an annotator error
    pending again. A batch that fails (see `tasks.annotate`) stops the run with its error;
    the batches written before it stay, the rest stay pending for the next run."""
    logger = get_run_logger()
    for name in annotators:  # an unknown name fails the run before any annotator works
        annotator_class(name)
    options = annotator_options or {}
    generator = default_generator or GeneratorConfig()
    compute = compute or ComputeConfig()
    with (
        tracked_run(db, "annotate", {"annotators": annotators, "options": options}) as run,
        task_runner(compute) as runner,
        HeldStore(db) as held,
    ):
        for name in annotators:
            annotator = make_annotator(name, options.get(name), generator)  # once per flow run
            unavailable = check_annotator(annotator)
            if unavailable:
                logger.warning("annotator %s is unavailable here: %s", name, unavailable)
                run.summary[name] = {"status": "unavailable", "reason": unavailable}
                continue
            errors_retried = forget_annotator_errors(db, annotator) if retry_errors else 0
            pending = pending_rollout_ids(db, annotator)
            first_pending = len(pending)
            written: dict[str, int] = {"rollouts": 0}
            if errors_retried:
                written["errored_rollouts_retried"] = errors_retried
            labelled = 0
            with (
                Progress(f"annotating with {name}", first_pending) as progress,
                progress.track_generation(),
                garbage_collection_for_labelling(),
            ):
                try:
                    while pending:
                        labelled_before = labelled
                        batches = claimed_batches(held, annotator, run.run_id, pending, batch_size)
                        reader = InputReader(held, pending, annotator.reads_siblings)
                        for output in label_batches(runner, compute, reader, annotator, batches, run.run_id):
                            with held.use() as store:
                                written_now = write_labels(store, annotator, output)
                            for table, rows in written_now.items():
                                written[table] = written.get(table, 0) + rows
                            labelled += output.annotator_costs.num_rows
                            progress.finish_batch(labelled)
                        if labelled == labelled_before:  # every pending rollout is another live run's
                            written["left_to_other_runs"] = len(pending)
                            break
                        # Again for rollouts freed meanwhile: claims of runs that failed or died.
                        pending = pending_rollout_ids(db, annotator)
                except Exception as error:
                    with held.use() as store:
                        release_claims(store, annotator, run.run_id)  # other runs may take the rest now
                    # The run's record keeps how far this annotator got; the error ends the run.
                    still_pending = max(first_pending - labelled, 0)
                    run.summary[name] = {
                        "status": "failed",
                        **written,
                        "rollouts": labelled,
                        "still_pending": still_pending,
                    }
                    logger.error(
                        "%s stopped after labelling %d of %d rollouts; the other %d stay pending "
                        "for the next run: %s: %s",
                        name,
                        labelled,
                        first_pending,
                        still_pending,
                        type(error).__name__,
                        error,
                    )
                    raise
            written["rollouts"] = labelled
            logger.info("%s: %s", name, written)
            run.summary[name] = {"status": "done", **written}
    return run.summary


def label_batches(
    runner: Any,
    compute: ComputeConfig,
    reader: InputReader,
    annotator: Annotator,
    batches: Iterator[list[str]],
    run_id: str,
) -> Iterator[LabelTables]:
    """Each batch's labels as it finishes, with at most two batches per worker in flight
    (memory stays bounded, and workers never wait for this process to read the next one)."""
    # CPU-bound annotators side by side in threads would share one GIL (and Z3 is not
    # thread-safe): they label in worker processes instead. Dask and Ray workers are processes.
    processes = (
        compute.workers if (compute.task_runner == "threads" and compute.workers > 1 and annotator.cpu_bound) else 0
    )
    in_flight: deque = deque()  # in submission order: batches are alike, so the oldest finishes first
    for batch in batches:
        inputs = reader.inputs(batch)  # Arrow: the worker makes the annotator's records
        in_flight.append(
            runner.submit(
                label_batch,
                {
                    "annotator": annotator,
                    "inputs": inputs,
                    "run_id": run_id,
                    "processes": processes,
                },
            )
        )
        if len(in_flight) >= 2 * compute.workers:
            yield in_flight.popleft().result()
    while in_flight:
        yield in_flight.popleft().result()
