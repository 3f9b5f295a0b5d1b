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

Runs that share a store split the work: a run claims batches (`claim_batch`) as it comes to
label them, in one short transaction that takes only rollouts still pending and claimed by no
live run (several batches at once while no other run claims), and the claims go with the
batch's labels. A claim lasts as long as its run's heartbeat, so the rollouts of a run that died
are taken over by the next claim.

The process that holds the store only reads and writes Arrow: a batch's inputs go to the
labelling task as Arrow (`InputBatch`, read a window of batches ahead by `InputReader`) and its
labels come back as Arrow (`LabelTables`); the annotator's records are made and unmade where the
batch is labelled, in a worker process when there are several.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import socket
import threading
import uuid
from bisect import bisect_left
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.annotators import build_annotator
from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, AnnotatorUnavailable
from rmforge.generators.base import GenerationError
from rmforge.schemas.config import GeneratorConfig
from rmforge.schemas.records import Problem, Rollout, utc_now
from rmforge.schemas.tables import TABLES, arrow_records, to_arrow
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


# Net allocations of container objects between two collections of the youngest generation
# (Python's default: 700). A batch's records are freed by reference counting as it ends; counted
# against 700 they set off collections that walked them again and again.
YOUNG_COLLECTION_THRESHOLD = 20_000


@contextmanager
def garbage_collection_for_labelling() -> Iterator[None]:
    """The cyclic garbage collector fitted to labelling for the block, as it was after: every object
    alive when the block starts (modules, Prefect, the annotator, its engine) is frozen out of its
    reach, and the youngest generation is collected after YOUNG_COLLECTION_THRESHOLD allocations.
    Without this, collections took ~20 ms of each batch of 1,000 at 100k rollouts, more than half the
    `answer` checker's own time (bench/store_throughput.py). Put back after the block, so a process
    that calls the API again and again keeps a collector that reaches all its objects."""
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(threshold[0], YOUNG_COLLECTION_THRESHOLD), *threshold[1:])
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def pending_sql(limited: bool) -> str:
    """The query for the rollouts without a current done marker for a configuration; a marker is
    current when it was made from as many steps as the rollout has now. Parameters: annotator and
    config hash. `limited`: only the rollouts of the registered Arrow table `_candidates` (ids of
    stored rollouts, which are never deleted), whose ids go in as a column rather than as a list
    parameter (binding a list of thousands of strings costs more than the query).

    Steps are counted only for the rollouts that have a marker: a batch of rollouts never labelled
    costs no read of the steps table (the claim of a batch at 100k rollouts, 11 ms -> 4 ms)."""
    candidates = "_candidates" if limited else "rollouts"
    of_candidates = "SEMI JOIN _candidates USING (rollout_id) " if limited else ""
    return (
        f"WITH marked AS (SELECT rollout_id, steps FROM annotator_costs {of_candidates}"
        "WHERE annotator = ? AND config_hash = ?), "
        "step_counts AS (SELECT rollout_id, count(*) AS n FROM steps SEMI JOIN marked USING (rollout_id) "
        "GROUP BY rollout_id), "
        "current AS (SELECT rollout_id FROM marked LEFT JOIN step_counts USING (rollout_id) "
        "WHERE marked.steps IS NOT DISTINCT FROM coalesce(step_counts.n, 0)) "
        f"SELECT rollout_id FROM {candidates} ANTI JOIN current USING (rollout_id)"
    )


def id_table(rollout_ids: list[str]) -> pa.Table:
    return pa.table({"rollout_id": pa.array(rollout_ids, pa.string())})


@task(name="find-pending-rollouts", cache_policy=NO_CACHE)
def pending_rollout_ids(db: str, annotator: Annotator) -> list[str]:
    """Rollouts without a current done marker for this configuration (see `pending_sql`), in a
    stable order, claimed or not."""
    with Store(db) as store:  # a column, not a dict per row: at a million rollouts that is ~200 MiB less
        return (
            store.sql(pending_sql(limited=False) + " ORDER BY rollout_id", [annotator.name, annotator.config_hash])
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


def claim_batch(
    store: Store, annotator: Annotator, run_id: str, candidates: list[str], batch_size: int, batches_alone: int = 1
) -> list[str]:
    """Claim for `run_id` the first `batch_size` of `candidates` that are still pending and
    claimed by no live run, or `batches_alone` times as many when no other run holds claims for
    the configuration; the claimed ids, sorted.

    One transaction: the claims of runs that are not `running` any more (view `runs_health`:
    finished, failed, or crashed with a stopped heartbeat) go, and those made by a process on this
    machine that is gone (killed: its heartbeat has not gone stale yet, a rerun must not wait), then
    the pending check and the new claims are one statement, which a DuckLake commit that lost to
    another writer replays on the newer snapshot, so two runs never hold the same rollout.
    """
    key = [annotator.name, annotator.config_hash]
    batch_id = uuid.uuid4().hex
    host, pid = socket.gethostname(), os.getpid()
    with store.registered("_candidates", id_table(candidates)):  # registered until a lake's replays are done
        with store.transaction():
            others = drop_dead_claims(store, key, run_id, host)
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
                    batch_size if others else batch_size * batches_alone,
                ],
            )
    return (
        store.sql("SELECT rollout_id FROM batch_claims WHERE batch_id = ? ORDER BY rollout_id", [batch_id])
        .column("rollout_id")
        .to_pylist()
    )


def drop_dead_claims(store: Store, key: list[str], run_id: str, host: str) -> bool:
    """Delete the configuration's claims of runs that are not running any more, or whose process
    on this host is gone; whether other runs' claims remain. Only other runs' claims are looked
    at: with none (a run alone on its store) this is one read of the small claims table."""
    others = "FROM batch_claims WHERE annotator = ? AND config_hash = ? AND run_id <> ?"
    claimants = store.rows(f"SELECT DISTINCT run_id, host, pid, process_started {others}", [*key, run_id])
    if not claimants:
        return False
    gone = [
        row["run_id"]
        for row in claimants
        if row["host"] == host and row["pid"] is not None and not process_alive(row["pid"], row["process_started"])
    ]
    store.execute(
        f"DELETE {others} "
        "AND (run_id NOT IN (SELECT run_id FROM runs_health WHERE status = 'running') OR run_id IN (SELECT UNNEST(?)))",
        [*key, run_id, gone],
    )
    return store.execute(f"SELECT count(*) {others}", [*key, run_id])[0][0] > 0


# How many batches a run claims at once while it is the only one claiming for its configuration:
# one claim transaction for several batches (nobody else wants them; a run that starts meanwhile
# takes the batches after them, and from then on both claim one batch at a time).
CLAIM_AHEAD_BATCHES = 4


def claimed_batches(
    held: HeldStore, annotator: Annotator, run_id: str, candidates: list[str], batch_size: int
) -> Iterator[list[str]]:
    """Batches of `candidates` (sorted, as `pending_rollout_ids` gives them), claimed as the
    caller asks for them (up to CLAIM_AHEAD_BATCHES at a time while no other run claims), so that
    runs working side by side interleave; candidates labelled or claimed by other runs meanwhile
    are skipped."""
    start = 0
    while start < len(candidates):
        window = candidates[start : start + CLAIM_WINDOW_BATCHES * batch_size]
        with held.use() as store:
            claimed = claim_batch(store, annotator, run_id, window, batch_size, CLAIM_AHEAD_BATCHES)
        # Whole batches end at the last claim; a short one means the whole window was looked at.
        full = bool(claimed) and len(claimed) % batch_size == 0
        start += window.index(claimed[-1]) + 1 if full else len(window)
        for first in range(0, len(claimed), batch_size):
            yield claimed[first : first + batch_size]


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
    return InputWindow(store, rollout_ids, with_siblings).batch(rollout_ids).items()


@dataclass
class InputBatch:
    """A batch's stored inputs as Arrow (`InputWindow.batch`), made into the annotator's records
    (`items`) where the batch is labelled: the process that holds the store only reads, and a
    worker process is sent Arrow, not a thousand pickled records."""

    rollouts: pa.Table  # in rollout id order
    problems: pa.Table  # those of the rollouts
    steps: pa.Table  # rollout_id, text: the rollouts' steps in order
    siblings: pa.Table | None  # every stored rollout of the problems, in rollout id order, when asked for

    def items(self) -> list[AnnotationInput]:
        problems = {problem.problem_id: problem for problem in arrow_records(Problem, self.problems)}
        steps = {
            rollout_id: [text for _, text in rows]
            for rollout_id, rows in groupby(
                zip(self.steps["rollout_id"].to_pylist(), self.steps["text"].to_pylist()), itemgetter(0)
            )
        }
        siblings: dict[str, list[Rollout]] = {}
        for sibling in arrow_records(Rollout, self.siblings) if self.siblings is not None else []:
            siblings.setdefault(sibling.problem_id, []).append(sibling)
        return [
            AnnotationInput(
                problem=problems[rollout.problem_id],
                rollout=rollout,
                steps=steps.get(rollout.rollout_id, []),
                siblings=[s for s in siblings.get(rollout.problem_id, []) if s.rollout_id != rollout.rollout_id],
            )
            for rollout in arrow_records(Rollout, self.rollouts)
        ]


class InputWindow:
    """The stored inputs of some rollouts as Arrow tables (their rows, steps and problems; with
    siblings, every rollout of those problems), taken a batch at a time (`batch`).

    Keys go in as registered columns, never as list parameters (binding a thousand strings costs
    more than the read).
    """

    def __init__(self, store: Store, rollout_ids: list[str], with_siblings: bool) -> None:
        with store.registered("_window", id_table(rollout_ids)):
            self.rollouts = store.sql("SELECT * FROM rollouts SEMI JOIN _window USING (rollout_id)")
            self.steps = store.sql(
                "SELECT rollout_id, text FROM steps SEMI JOIN _window USING (rollout_id) ORDER BY rollout_id, step_index"
            )
        self.rollout_rows = {rollout_id: row for row, rollout_id in enumerate(self.rollouts["rollout_id"].to_pylist())}
        self.step_rows: dict[str, list[int]] = {}  # rollout id -> its rows in `steps` (texts stay Arrow)
        for row, rollout_id in enumerate(self.steps["rollout_id"].to_pylist()):
            self.step_rows.setdefault(rollout_id, []).append(row)
        with store.registered("_problems", pa.table({"problem_id": pc.unique(self.rollouts["problem_id"])})):
            self.problems = store.sql("SELECT * FROM problems SEMI JOIN _problems USING (problem_id)")
            self.siblings = (
                store.sql("SELECT * FROM rollouts SEMI JOIN _problems USING (problem_id) ORDER BY rollout_id")
                if with_siblings
                else None
            )
        self.problem_rows = {problem_id: row for row, problem_id in enumerate(self.problems["problem_id"].to_pylist())}
        self.sibling_rows: dict[str, list[int]] = {}  # problem id -> its rows in `siblings`
        if self.siblings is not None:
            for row, problem_id in enumerate(self.siblings["problem_id"].to_pylist()):
                self.sibling_rows.setdefault(problem_id, []).append(row)

    def covers(self, rollout_ids: list[str]) -> bool:
        return all(rollout_id in self.rollout_rows for rollout_id in rollout_ids)

    def batch(self, rollout_ids: list[str]) -> InputBatch:
        """The inputs of the stored rollouts among these."""
        ids = [r for r in sorted(set(rollout_ids)) if r in self.rollout_rows]
        rollouts = self.rollouts.take([self.rollout_rows[r] for r in ids])
        problem_of = dict(zip(ids, rollouts["problem_id"].to_pylist()))
        missing = [r for r in ids if problem_of[r] not in self.problem_rows]
        if missing:
            raise ValueError(f"rollouts {missing[:5]} reference problems that are not in the store")
        problem_ids = sorted(set(problem_of.values()))
        return InputBatch(
            rollouts=rollouts,
            problems=self.problems.take([self.problem_rows[p] for p in problem_ids]),
            steps=self.steps.take(pa.array([row for r in ids for row in self.step_rows.get(r, [])], pa.int64())),
            siblings=None
            if self.siblings is None
            else self.siblings.take([row for p in problem_ids for row in self.sibling_rows[p]]),
        )


# How many candidates `InputReader` reads at a time: a read of 1,000 rollouts costs most of a read
# of 8,000 (each scans the tables' key columns), so reading ahead cuts the reads per batch.
READ_WINDOW_ROLLOUTS = 8192


class InputReader:
    """The inputs of a run's batches (`InputBatch`), read a window of the run's candidates at a
    time: the batch's own and those of the next READ_WINDOW_ROLLOUTS candidates, which the next
    batches take (claimed batches come in candidate order).

    Reading ahead is safe for the same reason as reading before a claim: rollouts and problems do
    not change, and a rollout's done marker records the steps its labels were made from, so a
    rollout whose steps changed after the read is pending again. Inputs of rollouts that other runs
    claimed are dropped with their window.
    """

    def __init__(self, held: HeldStore, candidates: list[str], with_siblings: bool) -> None:
        self.held = held
        self.candidates = candidates  # sorted, as `pending_rollout_ids` gives them
        self.with_siblings = with_siblings
        self._window: InputWindow | None = None

    def inputs(self, batch: list[str]) -> InputBatch:
        """The batch's inputs; its ids are candidates."""
        if self._window is None or not self._window.covers(batch):
            start = bisect_left(self.candidates, batch[0])
            end = max(bisect_left(self.candidates, batch[-1]) + 1, start + READ_WINDOW_ROLLOUTS)
            self._window = None  # the old window's tables go before the new ones come
            with self.held.use() as store:
                self._window = InputWindow(store, self.candidates[start:end], self.with_siblings)
        return self._window.batch(batch)


def failed_item_output(annotator: Annotator, item: AnnotationInput, error: Exception, run_id: str) -> AnnotationOutput:
    """`unknown` labels, with the error as their reason, wherever the annotator would label."""
    reason = f"{ANNOTATOR_ERROR} {type(error).__name__}: {str(error)[:300]}"
    output = AnnotationOutput()
    if annotator.evidence.labels_steps:
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


@dataclass
class LabelTables:
    """A labelled batch as the store's tables (Arrow), made where the batch was labelled (see
    `InputBatch`): the store's process only writes them."""

    step_labels: pa.Table
    outcome_labels: pa.Table
    critiques: pa.Table
    annotator_costs: pa.Table  # the done markers: one per rollout of the batch

    @classmethod
    def of(cls, output: AnnotationOutput) -> LabelTables:
        return cls(
            step_labels=to_arrow(TABLES["step_labels"], output.step_labels),
            outcome_labels=to_arrow(TABLES["outcome_labels"], output.outcome_labels),
            critiques=to_arrow(TABLES["critiques"], output.critiques),
            annotator_costs=to_arrow(TABLES["annotator_costs"], output.costs),
        )


def label_tables(annotator: Annotator, inputs: list[AnnotationInput] | InputBatch, run_id: str) -> LabelTables:
    """`label_items` from a batch's items or stored inputs, as the store's tables."""
    items = inputs.items() if isinstance(inputs, InputBatch) else inputs
    return LabelTables.of(label_items(annotator, items, run_id))


@task(name="label-batch", cache_policy=NO_CACHE)
def label_batch(
    annotator: Annotator, inputs: list[AnnotationInput] | InputBatch, run_id: str, processes: int = 0
) -> LabelTables:
    """Label one batch (its items, or its inputs as read from the store); touches no store, so it
    runs on any worker of any task runner.

    `processes` > 0: label it in that many shared worker processes (see `label_processes`).
    """
    if processes:
        return label_in_processes(processes, annotator, inputs, run_id)
    return label_tables(annotator, inputs, run_id)


def label_in_processes(
    processes: int, annotator: Annotator, inputs: list[AnnotationInput] | InputBatch, run_id: str
) -> LabelTables:
    """`label_tables` in the shared pool of that size. Kept out of `label_batch`, which Dask and Ray
    pickle by value: the pool's lock cannot travel."""
    pool = label_processes(processes)
    try:
        return pool.submit(label_tables, annotator, inputs, run_id).result()
    except BrokenProcessPool:
        # A pool whose worker died takes no more work: later batches get a fresh one.
        with _label_processes_lock:
            if _label_processes.get(processes) is pool:
                del _label_processes[processes]
        raise


def write_labels(store: Store, annotator: Annotator, labels: LabelTables) -> dict[str, int]:
    """A batch's labels and done markers in one transaction, which also ends the rollouts'
    claims (whichever run holds them: they are done); how many rows of each kind."""
    key = [annotator.name, annotator.config_hash]
    # Registered until a lake's replays are done.
    with store.registered("_batch", labels.annotator_costs.select(["rollout_id"])), store.transaction():
        if annotator.evidence.labels_steps:  # a redone rollout may have fewer steps than when it was last labelled
            store.execute(
                "DELETE FROM step_labels WHERE annotator = ? AND config_hash = ? "
                "AND rollout_id IN (SELECT rollout_id FROM _batch)",
                key,
            )
        store.execute(
            "DELETE FROM batch_claims WHERE annotator = ? AND config_hash = ? AND rollout_id IN (SELECT rollout_id FROM _batch)",
            key,
        )
        return {
            table: store.write(table, getattr(labels, table), on_conflict="replace")
            for table in ("step_labels", "outcome_labels", "critiques", "annotator_costs")
        }
