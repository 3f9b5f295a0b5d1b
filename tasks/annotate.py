"""Run one annotator over one batch of rollouts and store its labels.

A rollout is done for an annotator configuration once its `annotator_costs` row
exists and records the step count the rollout has now; labels and that marker are
written in one transaction, so a crash never leaves a half-labelled rollout and a
rerun only labels what is missing or was labelled from incomplete input (e.g. before
an interrupted import had split its steps).

One rollout that makes an annotator raise does not stop the batch: the batch is
retried item by item and the failing item gets `unknown` labels naming the error.
An error that is not the item's own fails the batch instead, writing nothing, so its
rollouts stay pending and the next run labels them: a failure of an external service
(`GenerationError`: the LLM server is down, the engine did not start or died), a missing
tool (`AnnotatorUnavailable`), a dead worker process, no memory left, or the same error
for every item of a batch of several. `forget_annotator_errors` makes the rollouts
already labelled `unknown` for an error pending again (`rmforge annotate --retry-errors`).

Runs that share a store split the work: a run claims each batch (`claim_batch`) just before
labelling it, in one short transaction that takes only rollouts still pending and claimed by no
live run, and the claims go with the batch's labels. A claim lasts as long as its run's
heartbeat, so the rollouts of a run that died are taken over by the next claim.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.annotators import build_annotator
from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, AnnotatorUnavailable
from rmforge.generators.base import GenerationError
from rmforge.schemas.config import GeneratorConfig
from rmforge.schemas.records import Problem, Rollout, utc_now
from rmforge.store import Store
from rmforge.store.held import HeldStore

# Errors that say nothing about the rollout being labelled: they fail the whole batch.
NOT_THE_ROLLOUTS_FAULT = (GenerationError, AnnotatorUnavailable, BrokenProcessPool, MemoryError)
# The reason of an `unknown` label that stands for an error rather than a verdict.
ANNOTATOR_ERROR = "annotator error:"


class SharedBatchError(RuntimeError):
    """Every rollout of a batch of several failed with the same error: the annotator or its
    surroundings are broken, not the rollouts."""


def make_annotator(name: str, options: dict[str, Any] | None, default_generator: GeneratorConfig) -> Annotator:
    return build_annotator(name, options or {}, default_generator=default_generator)


@task(name="check-annotator", cache_policy=NO_CACHE)
def check_annotator(annotator: Annotator) -> str | None:
    """None when the annotator can run here, else why not (e.g. no `lean` binary)."""
    return annotator.availability()


def pending_sql(limited: bool) -> str:
    """The query for the rollouts without a current done marker for a configuration; a marker is
    current when it was made from as many steps as the rollout has now. Parameters: annotator and
    config hash. `limited`: only the rollouts of the registered Arrow table `_candidates`, whose
    ids go in as a column rather than as a list parameter (binding a list of thousands of strings
    costs more than the query)."""
    candidates = "rollout_id IN (SELECT rollout_id FROM _candidates)"
    sql = (
        f"WITH step_counts AS (SELECT rollout_id, count(*) AS n FROM steps{' WHERE ' + candidates if limited else ''} "
        "GROUP BY rollout_id) "
        "SELECT r.rollout_id FROM rollouts r LEFT JOIN step_counts s USING (rollout_id) "
        "LEFT JOIN annotator_costs c ON c.rollout_id = r.rollout_id AND c.annotator = ? AND c.config_hash = ? "
        "WHERE (c.rollout_id IS NULL OR c.steps IS DISTINCT FROM coalesce(s.n, 0))"
    )
    return sql + (f" AND r.{candidates}" if limited else "")


def id_table(rollout_ids: list[str]) -> pa.Table:
    return pa.table({"rollout_id": pa.array(rollout_ids, pa.string())})


@task(name="find-pending-rollouts", cache_policy=NO_CACHE)
def pending_rollout_ids(db: str, annotator: Annotator) -> list[str]:
    """Rollouts without a current done marker for this configuration (see `pending_sql`), in a
    stable order, claimed or not."""
    with Store(db) as store:  # a column, not a dict per row: at a million rollouts that is ~200 MiB less
        return (
            store.sql(pending_sql(limited=False) + " ORDER BY r.rollout_id", [annotator.name, annotator.config_hash])
            .column("rollout_id")
            .to_pylist()
        )


# How far past its last claim a run looks for unclaimed rollouts, in batches: far enough to step
# over the batches other runs hold, and one claim reads no more of the pending list than this.
CLAIM_WINDOW_BATCHES = 8


def process_start_time(pid: int) -> str | None:
    """When a process started (clock ticks since boot, from /proc), None without /proc or process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, started: str | None) -> bool:
    """Whether the process that made a claim on this machine still runs (True when /proc cannot tell)."""
    if not Path("/proc/self/stat").exists() or started is None:
        return True
    return process_start_time(pid) == started


def claim_batch(store: Store, annotator: Annotator, run_id: str, candidates: list[str], batch_size: int) -> list[str]:
    """Claim for `run_id` the first `batch_size` of `candidates` that are still pending and
    claimed by no live run; the claimed ids, sorted.

    One transaction: the claims of runs that are not `running` any more (view `runs_health`:
    finished, failed, or crashed with a stopped heartbeat) go, and those made by a process on this
    machine that is gone (killed: its heartbeat has not gone stale yet, a rerun must not wait), then the pending check and the
    new claims are one statement, which a DuckLake commit that lost to another writer replays on
    the newer snapshot, so two runs never hold the same rollout.
    """
    key = [annotator.name, annotator.config_hash]
    batch_id = uuid.uuid4().hex
    host, pid = socket.gethostname(), os.getpid()
    with store.registered("_candidates", id_table(candidates)):  # registered until a lake's replays are done
        with store.transaction():
            store.execute(
                "DELETE FROM batch_claims WHERE annotator = ? AND config_hash = ? "
                "AND run_id NOT IN (SELECT run_id FROM runs_health WHERE status = 'running')",
                key,
            )
            gone = [
                row["run_id"]
                for row in store.rows(
                    "SELECT DISTINCT run_id, pid, process_started FROM batch_claims "
                    "WHERE annotator = ? AND config_hash = ? AND host = ? AND pid IS NOT NULL",
                    [*key, host],
                )
                if not process_alive(row["pid"], row["process_started"])
            ]
            if gone:
                store.execute(
                    "DELETE FROM batch_claims WHERE annotator = ? AND config_hash = ? AND run_id IN (SELECT UNNEST(?))",
                    [*key, gone],
                )
            store.execute(
                "INSERT INTO batch_claims (rollout_id, annotator, config_hash, run_id, batch_id, claimed_at, host, pid, "
                "process_started) "
                f"SELECT rollout_id, ?, ?, ?, ?, ?, ?, ?, ? FROM ({pending_sql(limited=True)}) "
                "WHERE rollout_id NOT IN (SELECT rollout_id FROM batch_claims WHERE annotator = ? AND config_hash = ?) "
                "ORDER BY rollout_id LIMIT ?",
                [
                    *key,
                    run_id,
                    batch_id,
                    utc_now(),
                    host,
                    pid,
                    process_start_time(pid),
                    *key,
                    *key,
                    batch_size,
                ],
            )
    return (
        store.sql("SELECT rollout_id FROM batch_claims WHERE batch_id = ? ORDER BY rollout_id", [batch_id])
        .column("rollout_id")
        .to_pylist()
    )


def claimed_batches(
    held: HeldStore, annotator: Annotator, run_id: str, candidates: list[str], batch_size: int
) -> Iterator[list[str]]:
    """Batches of `candidates` (sorted, as `pending_rollout_ids` gives them), each claimed when
    the caller asks for it, so that runs working side by side interleave; candidates labelled or
    claimed by other runs meanwhile are skipped."""
    start = 0
    while start < len(candidates):
        window = candidates[start : start + CLAIM_WINDOW_BATCHES * batch_size]
        with held.use() as store:
            claimed = claim_batch(store, annotator, run_id, window, batch_size)
        # A full batch ends at its last claim; a short one means the whole window was looked at.
        start += window.index(claimed[-1]) + 1 if len(claimed) == batch_size else len(window)
        if claimed:
            yield claimed


def release_claims(store: Store, annotator: Annotator, run_id: str) -> int:
    """Give up the run's claims for this configuration (its batches failed); how many."""
    return store.execute(
        "DELETE FROM batch_claims WHERE run_id = ? AND annotator = ? AND config_hash = ?",
        [run_id, annotator.name, annotator.config_hash],
    )[0][0]


@task(name="forget-annotator-errors", cache_policy=NO_CACHE)
def forget_annotator_errors(db: str, annotator: Annotator) -> int:
    """Make the rollouts whose labels for this configuration record an annotator error
    pending again: their labels and done markers go, in one transaction. How many rollouts."""
    scope = "annotator = ? AND config_hash = ?"
    key = [annotator.name, annotator.config_hash]
    with Store(db) as store, store.transaction():
        errored = (
            store.sql(
                f"SELECT rollout_id FROM step_labels WHERE {scope} AND starts_with(reason, ?) "
                f"UNION SELECT rollout_id FROM outcome_labels WHERE {scope} AND starts_with(reason, ?)",
                [*key, ANNOTATOR_ERROR, *key, ANNOTATOR_ERROR],
            )
            .column("rollout_id")
            .to_pylist()
        )
        for table in ("step_labels", "outcome_labels", "annotator_costs"):
            store.execute(f"DELETE FROM {table} WHERE {scope} AND rollout_id IN (SELECT UNNEST(?))", [*key, errored])
    return len(errored)


def load_inputs(store: Store, rollout_ids: list[str], with_siblings: bool = False) -> list[AnnotationInput]:
    """The batch's rollouts with problems and steps; `with_siblings`: also every other stored
    rollout of the same problems (see `AnnotationInput.siblings`)."""
    with store.registered("_batch", id_table(rollout_ids)):
        rollouts = store.records(
            Rollout, "SELECT * FROM rollouts SEMI JOIN _batch USING (rollout_id) ORDER BY rollout_id"
        )
        step_rows = store.sql(
            "SELECT rollout_id, text FROM steps SEMI JOIN _batch USING (rollout_id) ORDER BY rollout_id, step_index"
        )
    steps: dict[str, list[str]] = {}
    for rollout_id, text in zip(step_rows["rollout_id"].to_pylist(), step_rows["text"].to_pylist()):
        steps.setdefault(rollout_id, []).append(text)
    problem_ids = sorted({r.problem_id for r in rollouts})
    problems = {
        p.problem_id: p
        for p in store.records(Problem, "SELECT * FROM problems WHERE problem_id IN (SELECT UNNEST(?))", [problem_ids])
    }
    missing = [r.rollout_id for r in rollouts if r.problem_id not in problems]
    if missing:
        raise ValueError(f"rollouts {missing[:5]} reference problems that are not in the store")
    siblings: dict[str, list[Rollout]] = {}
    if with_siblings:
        for sibling in store.records(
            Rollout, "SELECT * FROM rollouts WHERE problem_id IN (SELECT UNNEST(?)) ORDER BY rollout_id", [problem_ids]
        ):
            siblings.setdefault(sibling.problem_id, []).append(sibling)
    return [
        AnnotationInput(
            problem=problems[r.problem_id],
            rollout=r,
            steps=steps.get(r.rollout_id, []),
            siblings=[s for s in siblings.get(r.problem_id, []) if s.rollout_id != r.rollout_id],
        )
        for r in rollouts
    ]


def failed_item_output(annotator: Annotator, item: AnnotationInput, error: Exception, run_id: str) -> AnnotationOutput:
    """`unknown` labels, with the error as their reason, wherever the annotator would label."""
    reason = f"{ANNOTATOR_ERROR} {type(error).__name__}: {str(error)[:300]}"
    output = AnnotationOutput()
    if annotator.evidence.confirms_steps or annotator.evidence.refutes_steps:
        output.step_labels = [
            annotator.step_label(item, index, "unknown", run_id, reason=reason) for index in range(len(item.steps))
        ]
    if annotator.evidence.labels_outcomes:
        output.outcome_labels = [annotator.outcome_label(item, "unknown", run_id, reason=reason)]
    return output


def annotate_items(annotator: Annotator, items: list[AnnotationInput], run_id: str) -> AnnotationOutput:
    """The whole batch at once; after a failure, item by item so one bad rollout costs only itself.

    Raises what is not the rollouts' fault (`NOT_THE_ROLLOUTS_FAULT`, `SharedBatchError`).
    """
    try:
        return annotator.annotate(items, run_id)
    except NOT_THE_ROLLOUTS_FAULT:
        raise
    except Exception:  # noqa: BLE001  # narrowed to the failing items below
        results = [annotate_one(annotator, item, run_id) for item in items]
    errors = [result for result in results if isinstance(result, Exception)]
    if len(items) > 1 and len(errors) == len(items) and len({error_text(error) for error in errors}) == 1:
        raise SharedBatchError(
            f"{annotator.name} failed on all {len(items)} rollouts of a batch with the same error: "
            f"{error_text(errors[0])}"
        ) from errors[0]
    output = AnnotationOutput()
    for item, result in zip(items, results):
        output.extend(failed_item_output(annotator, item, result, run_id) if isinstance(result, Exception) else result)
    return output


def annotate_one(annotator: Annotator, item: AnnotationInput, run_id: str) -> AnnotationOutput | Exception:
    """The item's labels, or the error it alone raised."""
    try:
        return annotator.annotate([item], run_id)
    except NOT_THE_ROLLOUTS_FAULT:
        raise
    except Exception as error:  # noqa: BLE001  # judged by `annotate_items`: this item's, or the batch's
        return error


def error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def label_items(annotator: Annotator, items: list[AnnotationInput], run_id: str) -> AnnotationOutput:
    """Labels, critiques and one done marker per rollout (recording its step count) for a batch."""
    output = annotate_items(annotator, items, run_id)
    costed = {c.rollout_id for c in output.costs}
    output.costs.extend(annotator.cost(item, 0, run_id) for item in items if item.rollout.rollout_id not in costed)
    step_counts = {item.rollout.rollout_id: len(item.steps) for item in items}
    for cost in output.costs:
        cost.steps = step_counts[cost.rollout_id]
    return output


# Worker processes for CPU-bound annotators whose batches run side by side in threads: Python
# work holds the GIL and a Z3 context must not be shared by two threads, so each batch is
# labelled in a process of its own. Spawned (forking a process with Prefect's threads is unsafe)
# once per process and size, reused by every later batch. The workers end with the command
# through rmforge.orphans, not a parent-death signal: that fires when the task thread that
# happened to start a worker exits, while the pool lives on.
_label_processes: dict[int, ProcessPoolExecutor] = {}
_label_processes_lock = threading.Lock()


def label_processes(workers: int) -> ProcessPoolExecutor:
    with _label_processes_lock:
        if workers not in _label_processes:
            _label_processes[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        return _label_processes[workers]


@task(name="label-batch", cache_policy=NO_CACHE)
def label_batch(
    annotator: Annotator, items: list[AnnotationInput], run_id: str, processes: int = 0
) -> AnnotationOutput:
    """Label one batch; touches no store, so it runs on any worker of any task runner.

    `processes` > 0: label it in that many shared worker processes (see `label_processes`).
    """
    if processes:
        return label_in_processes(processes, annotator, items, run_id)
    return label_items(annotator, items, run_id)


def label_in_processes(
    processes: int, annotator: Annotator, items: list[AnnotationInput], run_id: str
) -> AnnotationOutput:
    """`label_items` in the shared pool of that size. Kept out of `label_batch`, which Dask and Ray
    pickle by value: the pool's lock cannot travel."""
    pool = label_processes(processes)
    try:
        return pool.submit(label_items, annotator, items, run_id).result()
    except BrokenProcessPool:
        # A pool whose worker died takes no more work: later batches get a fresh one.
        with _label_processes_lock:
            if _label_processes.get(processes) is pool:
                del _label_processes[processes]
        raise


def write_labels(store: Store, annotator: Annotator, output: AnnotationOutput) -> dict[str, int]:
    """A batch's labels and done markers in one transaction, which also ends the rollouts'
    claims (whichever run holds them: they are done); how many rows of each kind."""
    key = [annotator.name, annotator.config_hash]
    # Registered until a lake's replays are done.
    with store.registered("_batch", id_table([cost.rollout_id for cost in output.costs])), store.transaction():
        # A redone rollout may have fewer steps than when it was last labelled.
        store.execute(
            "DELETE FROM step_labels WHERE annotator = ? AND config_hash = ? AND rollout_id IN (SELECT rollout_id FROM _batch)",
            key,
        )
        store.execute(
            "DELETE FROM batch_claims WHERE annotator = ? AND config_hash = ? AND rollout_id IN (SELECT rollout_id FROM _batch)",
            key,
        )
        written = {
            "step_labels": store.write("step_labels", output.step_labels, on_conflict="replace"),
            "outcome_labels": store.write("outcome_labels", output.outcome_labels, on_conflict="replace"),
            "critiques": store.write("critiques", output.critiques, on_conflict="replace"),
            "annotator_costs": store.write("annotator_costs", output.costs, on_conflict="replace"),
        }
    return written
