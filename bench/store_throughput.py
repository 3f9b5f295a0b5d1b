"""Store throughput: the annotate flow's store work per batch at N rollouts, against its baselines.

Builds a store of N synthetic rollouts (bench/soak.py's rows and import), then labels them as the
annotate flow does, batch by batch: claim, read the inputs, label (the checker, timed apart from
the records the labelling task makes and unmakes), write the labels and done markers. Each
annotator runs twice on fresh copies of the store:

- `held`: what the flow does now (flows/annotate.py): one store kept open for all batches
  (rmforge.store.held), claims of up to CLAIM_AHEAD_BATCHES batches in one transaction while no
  other run claims, inputs read as Arrow a window of READ_WINDOW_ROLLOUTS candidates ahead
  (`InputReader`), records made in the labelling task, labels written as Arrow, and the garbage
  collector fitted to labelling (`garbage_collection_for_labelling`);
- `per step`: a store opened and closed for each step, one claim and one read per batch, records
  made while reading, Python's default garbage collection (the flow before issue 20).

The baselines are the same label rows (step labels, outcome labels, done markers) written into
other copies through Arrow with plain INSERTs, in one transaction, and in one transaction per batch,
with no key checks, claims or reads: the floors for writing them. `z3_arith` is sampled
(`--z3-batches` batches spread over the pending rollouts).

Run: PYTHONPATH=. .venv/bin/python bench/store_throughput.py [N] [--z3-batches K] [--batch B] [--report PATH]
(default N = 100,000, K = 20, batches of 1,000 (`--batch`); writes bench/reports/store_throughput.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from bench.soak import CheckerTimer, RssSampler, cpu_flags, cpu_name, duplicate_keys, import_files, spread

DEFAULT_BATCH = 1_000
REPORT = Path(__file__).parent / "reports" / "store_throughput.md"
LABEL_TABLES = ("step_labels", "outcome_labels", "annotator_costs")
# Columns that differ between two runs that wrote the same labels.
VOLATILE = {"run_id", "labeled_at"}


def label_run(db: str, name: str, mode: str, batches: int | None, batch_size: int) -> dict:
    """Label `db`'s pending rollouts with `name` as the flow does; per-batch seconds of each step."""
    import pyarrow as pa

    from rmforge.schemas.config import GeneratorConfig
    from rmforge.store import Store
    from rmforge.store.held import HeldStore
    from rmforge.store.runs import record_run_start
    from rmforge.tasks.annotate import (
        CLAIM_WINDOW_BATCHES,
        InputReader,
        claim_batch,
        claimed_batches,
        garbage_collection_for_labelling,
        label_batch,
        load_inputs,
        make_annotator,
        pending_rollout_ids,
        write_labels,
    )

    annotator = make_annotator(name, None, GeneratorConfig())
    run_id = f"bench-{mode.replace(' ', '-')}"
    record_run_start(db, run_id, "annotate", {"bench": mode})
    pending = pending_rollout_ids.fn(db, annotator)
    chosen = spread(-(-len(pending) // batch_size), batches)
    candidates = [
        rollout_id for number in chosen for rollout_id in pending[number * batch_size : (number + 1) * batch_size]
    ]
    checker = CheckerTimer(annotator)
    steps: dict[str, list[float]] = {"claim": [], "load": [], "label": [], "checker": [], "write": []}
    outputs: dict[str, list[pa.Table]] = {table: [] for table in LABEL_TABLES}
    # The held run's store and collector setting, closed and put back as the run ends.
    held_run = ExitStack()
    if mode == "held":  # what the flow does now: flows/annotate.py
        held = held_run.enter_context(HeldStore(db))
        held_run.enter_context(garbage_collection_for_labelling())
        reader = InputReader(held, candidates, annotator.reads_siblings)
        claims = claimed_batches(held, annotator, run_id, candidates, batch_size)

        def claim(number: int) -> list[str] | None:
            return next(claims, None)

        def load(batch: list[str]) -> list:
            return reader.inputs(batch)

        step_store: Callable[[], AbstractContextManager[Store]] = held.use
    else:  # what it did before: a store opened per step, one claim and one read per batch

        def claim(number: int) -> list[str] | None:
            window = candidates[number * batch_size : (number + CLAIM_WINDOW_BATCHES) * batch_size]
            with Store(db) as store:
                return claim_batch(store, annotator, run_id, window, batch_size) if window else None

        def load(batch: list[str]) -> list:
            with Store(db) as store:
                return load_inputs(store, batch, annotator.reads_siblings)

        def step_store() -> AbstractContextManager[Store]:
            return Store(db)

    t0 = time.perf_counter()
    with held_run:
        for number in range(len(chosen)):
            s0 = time.perf_counter()
            claimed = claim(number)
            if not claimed:
                break
            s1 = time.perf_counter()
            items = load(claimed)
            s2, c0 = time.perf_counter(), checker.seconds
            output = label_batch.fn(annotator, items, run_id)
            s3 = time.perf_counter()
            with step_store() as store:
                write_labels(store, annotator, output)
            s4 = time.perf_counter()
            for step, seconds in zip(("claim", "load", "label", "write"), (s1 - s0, s2 - s1, s3 - s2, s4 - s3)):
                steps[step].append(seconds)
            steps["checker"].append(checker.seconds - c0)
            for table in LABEL_TABLES:
                outputs[table].append(getattr(output, table))
    wall = time.perf_counter() - t0
    labels = {table: pa.concat_tables(parts) for table, parts in outputs.items()}
    batches_arrow = [{table: outputs[table][i] for table in LABEL_TABLES} for i in range(len(steps["claim"]))]
    return {
        "annotator": name,
        "mode": mode,
        "batches": len(steps["claim"]),
        "rollouts": labels["annotator_costs"].num_rows,
        "labels": labels["step_labels"].num_rows + labels["outcome_labels"].num_rows,
        "wall": wall,
        "steps": steps,
        "labels_arrow": labels,
        "batches_arrow": batches_arrow,
        "content": stored_labels(db, name),
    }


def stored_labels(db: str, name: str) -> dict[str, list]:
    """The annotator's stored label rows without run ids and times, sorted: equal for equal work."""
    from rmforge.schemas.tables import TABLES
    from rmforge.store import Store

    with Store(db, read_only=True) as store:
        content = {}
        for table in LABEL_TABLES:
            columns = ", ".join(f'"{c}"' for c in TABLES[table].columns if c not in VOLATILE)
            content[table] = sorted(store.execute(f"SELECT {columns} FROM {table} WHERE annotator = ?", [name]))
            duplicates = duplicate_keys(store, table)
            if duplicates:
                raise SystemExit(f"{table}: {duplicates} duplicate keys after the run")
    return content


def arrow_baseline(db: str, batches: list[dict]) -> float:
    """Seconds to write the label rows (Arrow tables) into `db` with plain INSERTs in one transaction
    per item of `batches`, on one connection; its close (the checkpoint of what it wrote) counts too."""
    import duckdb

    con = duckdb.connect(db)
    t0 = time.perf_counter()
    for batch in batches:
        con.execute("BEGIN TRANSACTION")
        for table, rows in batch.items():
            con.register("_rows", rows)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
            con.unregister("_rows")
        con.execute("COMMIT")
    con.close()
    return time.perf_counter() - t0


def total(run: dict, *steps: str) -> float:
    return sum(sum(run["steps"][step]) for step in steps)


def per_batch(run: dict, *steps: str) -> float:
    return total(run, *steps) / run["batches"]


STORE_STEPS = ("claim", "load", "write")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--z3-batches", type=int, default=20, help="z3_arith batches, spread over the store")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="rollouts per batch")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    if args.n < args.batch or args.z3_batches < 1 or args.batch < 1:
        parser.error("want 1 <= --batch <= N and --z3-batches >= 1")

    work = Path(tempfile.mkdtemp(prefix="store-throughput-"))
    load_start = os.getloadavg()
    base = str(work / "base.duckdb")
    t0 = time.perf_counter()
    import_files(base, args.n, work, RssSampler())
    import_s = time.perf_counter() - t0

    runs, baselines = [], {}
    for name, batches in (("answer", None), ("z3_arith", args.z3_batches)):
        for mode in ("per step", "held"):
            db = str(work / f"{name}-{mode.replace(' ', '-')}.duckdb")
            shutil.copy(base, db)
            runs.append(label_run(db, name, mode, batches, args.batch))
            print(f"{name} {mode}: {runs[-1]['wall']:.1f} s", flush=True)
        if runs[-1]["content"] != runs[-2]["content"]:
            raise SystemExit(f"{name}: the held store wrote other labels than per-step opens")
        for baseline, batches in (("one", [runs[-1]["labels_arrow"]]), ("per batch", runs[-1]["batches_arrow"])):
            db = str(work / f"{name}-arrow-{baseline.replace(' ', '-')}.duckdb")
            shutil.copy(base, db)
            baselines[name, baseline] = arrow_baseline(db, batches)
    load_end = os.getloadavg()
    shutil.rmtree(work)
    write_report(args, runs, baselines, import_s, (load_start, load_end))
    print(args.report.read_text())


def write_report(args: argparse.Namespace, runs: list[dict], baselines: dict, import_s: float, load: tuple) -> None:
    command = f"bench/store_throughput.py {args.n} --z3-batches {args.z3_batches}" + (
        f" --batch {args.batch}" if args.batch != DEFAULT_BATCH else ""
    )
    lines = [
        "# Store throughput: the annotate flow's store work per batch",
        "",
        (
            f"`PYTHONPATH=. .venv/bin/python {command}` on {cpu_name()} ({os.cpu_count()} cores; SIMD: "
            f"{cpu_flags()}), shared with other jobs: load average {load[0][0]:.1f} at the start, "
            f"{load[1][0]:.1f} at the end. {args.n:,} synthetic rollouts (bench/soak.py's, imported in "
            f"{import_s:.0f} s), batches of {args.batch:,}; `z3_arith` on {args.z3_batches} batches spread over "
            "the store. Each row ran on its own copy of the store, all in this one run."
        ),
        "",
        "| annotator | store | batches | wall s | rollouts/s | labels/s | claim / read / write ms per batch "
        "| store ms per batch | checker ms per batch | records ms per batch | store / checker |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        store_ms, checker_ms = per_batch(run, *STORE_STEPS) * 1000, per_batch(run, "checker") * 1000
        records_ms = per_batch(run, "label") * 1000 - checker_ms
        parts = " / ".join(f"{per_batch(run, step) * 1000:.0f}" for step in STORE_STEPS)
        lines.append(
            f"| {run['annotator']} | {run['mode']} | {run['batches']} | {run['wall']:.1f} "
            f"| {run['rollouts'] / run['wall']:,.0f} | {run['labels'] / run['wall']:,.0f} | {parts} "
            f"| {store_ms:.0f} | {checker_ms:.0f} | {records_ms:.0f} | {store_ms / checker_ms:.2f} |"
        )
    lines += [
        "",
        "Against the baselines, measured in the same run: per-step opens, and the same label rows (step "
        "labels, outcome labels, done markers) written through Arrow with plain INSERTs on one connection, in "
        "one transaction or in one per batch (no key checks, claims or reads; the close's checkpoint included):",
        "",
        "| annotator | label rows | Arrow, one transaction s | Arrow, one per batch s | held: write s "
        "| write / one | write / per batch | held: store s | store / one | per step: store s "
        "| per step / held (store) | per step / held (wall) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for per_step, held in zip(runs[::2], runs[1::2]):
        name = held["annotator"]
        rows = sum(table.num_rows for table in held["labels_arrow"].values())
        one_s, per_batch_s = baselines[name, "one"], baselines[name, "per batch"]
        write_s, store_s = total(held, "write"), total(held, *STORE_STEPS)
        old_store_s = total(per_step, *STORE_STEPS)
        lines.append(
            f"| {name} | {rows:,} | {one_s:.2f} | {per_batch_s:.2f} | {write_s:.2f} | {write_s / one_s:.1f}x "
            f"| {write_s / per_batch_s:.1f}x | {store_s:.2f} | {store_s / one_s:.1f}x | {old_store_s:.2f} "
            f"| {old_store_s / store_s:.2f}x | {per_step['wall'] / held['wall']:.2f}x |"
        )
    lines += [
        "",
        "Store time is the claim (one transaction: stale claims dropped, the pending check over a window of "
        "batches, the new claims; `held` claims up to four batches at once while alone, and its claim time is "
        "spread over the batches it took), the read of the batch's rollouts, problems and steps (`held`: Arrow, "
        "a window of candidates read ahead and spread likewise; `per step`: made into records), and the write "
        "(one transaction: the batch's labels and done markers with their key checks, its claims deleted). The "
        "checker is the annotator's own work; records is the rest of the labelling task (`held`: the batch's "
        "records made from Arrow, and its labels and done markers made into Arrow; `per step`: the labels and "
        "done markers made into Arrow). Labels are step and outcome label rows. Both stores wrote the same "
        "label rows (checked, run ids and times aside), and no table holds a duplicate key.",
    ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
