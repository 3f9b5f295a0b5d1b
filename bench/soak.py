"""Soak: import and annotate (`answer`, `z3_arith`) N rollouts; memory must stay flat.

Imports N synthetic GSM8K-style rollouts in files of IMPORT_FILE_ROWS rows (as
`rmforge import rollouts` does: each file streamed, rollouts and steps in one
transaction per chunk),
then labels them with each annotator in batches of BATCH (the task functions the
flows call, without the Prefect server), timing the checker (the annotator's own
work) apart from the rest of each batch (reading inputs, writing labels). A thread
samples this process's RSS (plus the checker workers') every SAMPLE_S seconds.
Afterwards it checks that the store is consistent: every rollout has steps, an
`answer` outcome label and a current done marker for each annotator run on all
rollouts, and no table has a duplicate key.

`--sample ANNOTATOR=K` runs only K batches of that annotator, spread evenly over its
pending rollouts, to time it at the full store size when labelling all N would take
too long (the report says so; its done-marker check then counts K * BATCH rollouts).

`--existing --db PATH` skips the import and labels the rollouts already in PATH (a store an
earlier soak left), so one annotator's full pass can be measured on its own; `--annotators`
picks which annotators run.

Run: PYTHONPATH=. .venv/bin/python bench/soak.py [N] [--report PATH] [--db PATH] [--existing]
     [--annotators answer,z3_arith] [--sample z3_arith=50]
(default N = 1,000,000; writes bench/reports/soak.md, and every batch's times to soak.json beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

IMPORT_FILE_ROWS = 100_000  # rows per imported file (the import streams each in chunks of its own)
WRITE_ROWS = 10_000  # rows the bench generates at a time while writing a file
BATCH = 1_000
SAMPLE_S = 0.5
ANNOTATORS = ["answer", "z3_arith"]
REPORT = Path(__file__).parent / "reports" / "soak.md"

NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Mark", "Albert", "Ken", "Alexis", "Tina"]
ITEMS = ["clips", "apples", "pages", "marbles", "cookies", "stamps", "books", "eggs"]


def synthetic_rows(start: int, count: int, seed: int = 0) -> list[dict]:
    """GSM8K-style solutions: 2-6 steps of prose around arithmetic, a final answer.

    About a quarter carry an arithmetic slip (and the wrong final answer), some end
    with `#### n` instead of `\\boxed{}`, a few have no final answer at all.
    """
    rows = []
    for i in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + i)
        problem = i // 4  # four samples per problem
        prng = random.Random(problem)
        name, item = prng.choice(NAMES), prng.choice(ITEMS)
        value = prng.randint(2, 60)
        ops = [(prng.choice("+-*"), prng.randint(2, 12)) for _ in range(prng.randint(2, 6))]
        gold = value
        for op, operand in ops:
            gold = gold + operand if op == "+" else gold - operand if op == "-" else gold * operand
        question = (
            f"{name} has {value} {item}. "
            + " ".join(
                f"Then {'gets' if op == '+' else 'gives away' if op == '-' else 'multiplies them by'} {operand}."
                for op, operand in ops
            )
            + f" How many {item} does {name} have now?"
        )
        slip = rng.random() < 0.25
        slip_at = rng.randrange(len(ops))
        lines, current = [], value
        for k, (op, operand) in enumerate(ops):
            result = current + operand if op == "+" else current - operand if op == "-" else current * operand
            if slip and k == slip_at:
                result += rng.choice([-2, -1, 1, 3])
            lines.append(f"Step {k + 1}: {name} now has {current} {op} {operand} = {result} {item}.")
            current = result
        ending = rng.random()
        if ending < 0.05:
            final = f"So {name} ends up with some {item}."
        elif ending < 0.30:
            final = f"#### {current}"
        else:
            final = f"The answer is $\\boxed{{{current}}}$."
        rows.append(
            {
                "problem_id": f"soak-{problem}",
                "question": question,
                "gold_answer": str(gold),
                "response": "\n".join(lines) + "\n" + final,
                "model": f"synthetic-{i % 7}",
                "sample_index": i % 4,
            }
        )
    return rows


class RssSampler(threading.Thread):
    """Samples RSS (this process + children) with the current stage and progress."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, str, float, int]] = []  # (t, stage, progress, rss bytes)
        self.stage, self.progress = "start", 0.0
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    @staticmethod
    def rss() -> int:
        pids = [os.getpid()]
        try:
            children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
            pids += [int(p) for p in children]
        except OSError:
            pass
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_S):
            self.samples.append((time.monotonic() - self._t0, self.stage, self.progress, self.rss()))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def consistency(db: str, annotators: list, sampled: dict[str, int]) -> dict[str, int]:
    from rmforge.schemas.tables import TABLES
    from rmforge.store import Store

    with Store(db) as store:
        checks = {
            "rollouts": store.count("rollouts"),
            "rollouts without steps": store.rows(
                "SELECT count(*) AS n FROM rollouts r WHERE NOT EXISTS "
                "(SELECT 1 FROM steps s WHERE s.rollout_id = r.rollout_id)"
            )[0]["n"],
        }
        if "answer" in {a.name for a in annotators} and "answer" not in sampled:
            checks["rollouts without an answer label"] = store.rows(
                "SELECT count(*) AS n FROM rollouts r WHERE NOT EXISTS (SELECT 1 FROM outcome_labels o "
                "WHERE o.rollout_id = r.rollout_id AND o.annotator = 'answer')"
            )[0]["n"]
        for annotator in annotators:
            if annotator.name in sampled:
                checks[
                    f"rollouts with a current {annotator.name} done marker (sampled: {sampled[annotator.name]:,} "
                    f"batches)"
                ] = store.rows(
                    "WITH n AS (SELECT rollout_id, count(*) AS k FROM steps GROUP BY 1) "
                    "SELECT count(*) AS n FROM annotator_costs c LEFT JOIN n USING (rollout_id) "
                    "WHERE c.annotator = ? AND c.config_hash = ? AND c.steps = coalesce(n.k, 0)",
                    [annotator.name, annotator.config_hash],
                )[0]["n"]
                continue
            checks[f"rollouts without a current {annotator.name} done marker"] = store.rows(
                "WITH n AS (SELECT rollout_id, count(*) AS k FROM steps GROUP BY 1) "
                "SELECT count(*) AS n FROM rollouts r LEFT JOIN n USING (rollout_id) WHERE NOT EXISTS "
                "(SELECT 1 FROM annotator_costs c WHERE c.rollout_id = r.rollout_id AND c.annotator = ? "
                "AND c.config_hash = ? AND c.steps = coalesce(n.k, 0))",
                [annotator.name, annotator.config_hash],
            )[0]["n"]
        checks["z3_arith step labels on rollouts"] = store.rows(
            "SELECT count(DISTINCT rollout_id) AS n FROM step_labels WHERE annotator = 'z3_arith'"
        )[0]["n"]
        for name in TABLES:
            checks[f"duplicate keys in {name}"] = duplicate_keys(store, name)
        checks["steps"] = store.count("steps")
        checks["step labels"] = store.count("step_labels")
        checks["answer verdicts correct"] = store.rows(
            "SELECT count(*) AS n FROM outcome_labels WHERE annotator = 'answer' AND verdict = 'correct'"
        )[0]["n"]
    return checks


def duplicate_keys(store, table: str) -> int:
    """Rows of `table` beyond one per primary key (0 in a consistent store)."""
    from rmforge.schemas.tables import TABLES

    keys = ", ".join(TABLES[table].primary_key)
    return store.execute(
        f"SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {table})) FROM {table}"
    )[0][0]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    have = set(flags.split(":", 1)[1].split())
    return (
        ", ".join(f for f in ("avx2", "avx512f", "amx_tile", "avx512_bf16") if f in have) or "none of avx2/avx512/amx"
    )


def stage_rss(samples: list, stage: str) -> list[tuple[float, int]]:
    return [(progress, rss) for _, s, progress, rss in samples if s == stage]


def quartiles(points: list[tuple[float, int]]) -> str:
    """Max RSS (MiB) in each quarter of a stage's progress: flat means bounded."""
    cells = []
    for q in range(4):
        in_q = [rss for p, rss in points if q / 4 <= p < (q + 1) / 4 or (q == 3 and p >= 1)]
        cells.append(f"{max(in_q) / 2**20:.0f}" if in_q else "-")
    return " / ".join(cells)


class CheckerTimer:
    """Wraps an annotator's `annotate` to add up the seconds spent inside it (the checker)."""

    def __init__(self, annotator) -> None:
        self.seconds = 0.0
        inner = annotator.annotate

        def annotate(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        annotator.annotate = annotate


def spread(batches: int, keep: int | None) -> list[int]:
    """`keep` batch numbers spread evenly over `batches` (all of them when keep is None)."""
    if keep is None or keep >= batches:
        return list(range(batches))
    return sorted({round(i * (batches - 1) / max(keep - 1, 1)) for i in range(keep)})


def import_files(db: str, n: int, workdir: Path, sampler: RssSampler) -> list[float]:
    """Write and import N rollouts in files of IMPORT_FILE_ROWS; the seconds each file took."""
    from rmforge.schemas.config import StepSplitConfig
    from rmforge.tasks.rollouts import import_rollouts

    file_times = []
    for start in range(0, n, IMPORT_FILE_ROWS):
        c0 = time.perf_counter()
        source = workdir / "chunk.jsonl"
        with source.open("w") as file:
            for part in range(start, min(start + IMPORT_FILE_ROWS, n), WRITE_ROWS):
                rows = synthetic_rows(part, min(WRITE_ROWS, start + IMPORT_FILE_ROWS - part, n - part))
                file.write("\n".join(json.dumps(r) for r in rows) + "\n")
        import_rollouts.fn(db, str(source), "soak", StepSplitConfig())
        file_times.append(time.perf_counter() - c0)
        sampler.progress = min(1.0, (start + IMPORT_FILE_ROWS) / n)
    return file_times


def run(
    n: int,
    db: str,
    report: Path | None,
    sample: dict[str, int] | None = None,
    annotator_names: list[str] = ANNOTATORS,
    existing: bool = False,
) -> dict:
    from rmforge.schemas.config import GeneratorConfig
    from rmforge.store.held import HeldStore
    from rmforge.tasks.annotate import label_batch, load_inputs, make_annotator, pending_rollout_ids, write_labels

    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    sampler = RssSampler()
    sampler.start()
    load_start = os.getloadavg()
    sample = sample or {}
    timings: dict[str, float] = {}
    batch_times: dict[str, list[float]] = {}
    checker_times: dict[str, list[float]] = {}

    if not existing:
        sampler.stage = "import"
        t0 = time.perf_counter()
        batch_times["import"] = import_files(db, n, workdir, sampler)
        timings["import + split"] = time.perf_counter() - t0

    annotators = [make_annotator(name, None, GeneratorConfig()) for name in annotator_names]
    for annotator in annotators:
        stage = f"annotate {annotator.name}"
        sampler.stage, sampler.progress = stage, 0.0
        t0 = time.perf_counter()
        pending = pending_rollout_ids.fn(db, annotator)
        checker = CheckerTimer(annotator)
        times, checks = [], []
        chosen = spread(-(-len(pending) // BATCH), sample.get(annotator.name))
        with HeldStore(db) as held:  # one store for the stage, as the annotate flow holds it
            for done, number in enumerate(chosen, 1):
                b0, c0 = time.perf_counter(), checker.seconds
                with held.use() as store:
                    batch = load_inputs(store, pending[number * BATCH : (number + 1) * BATCH], annotator.reads_siblings)
                output = label_batch.fn(annotator, batch, "soak")
                with held.use() as store:
                    write_labels(store, annotator, output)
                times.append(time.perf_counter() - b0)
                checks.append(checker.seconds - c0)
                sampler.progress = done / len(chosen)
        del pending
        timings[stage] = time.perf_counter() - t0
        batch_times[stage] = times
        checker_times[stage] = checks

    sampler.stage = "check"
    t0 = time.perf_counter()
    checks = consistency(db, annotators, sample)
    timings["consistency check"] = time.perf_counter() - t0
    sampler.stop()
    load_end = os.getloadavg()
    size = sum(p.stat().st_size for p in Path(db).parent.glob(Path(db).name + "*"))
    result = {
        "n": n,
        "existing": existing,
        "annotators": annotator_names,
        "timings": timings,
        "batch_times": batch_times,
        "checker_times": checker_times,
        "sample": sample,
        "samples": sampler.samples,
        "checks": checks,
        "store_bytes": size,
        "load": (load_start, load_end),
    }
    if report is not None:
        write_report(result, report)
        times = {"batch_times": batch_times, "checker_times": checker_times, "load": result["load"]}
        report.with_suffix(".json").write_text(json.dumps(times))
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def write_report(result: dict, path: Path) -> None:
    n, samples, sample = result["n"], result["samples"], result["sample"]
    command = f"bench/soak.py {n}" + "".join(f" --sample {name}={k}" for name, k in sample.items())
    if result["existing"]:
        command += f" --existing --db STORE --annotators {','.join(result['annotators'])}"
    lines = [
        "# Soak: import and annotate at volume",
        "",
        (
            f"`PYTHONPATH=. .venv/bin/python {command}` on {cpu_name()} "
            f"({os.cpu_count()} cores; SIMD: {cpu_flags()}), shared with other jobs: load average "
            f"{result['load'][0][0]:.1f} at the start, {result['load'][1][0]:.1f} at the end."
        ),
        (
            f"{n:,} synthetic GSM8K-style rollouts, "
            + ("already in the store" if result["existing"] else f"imported in files of {IMPORT_FILE_ROWS:,} rows")
            + f" and labelled in batches of {BATCH:,} (task functions, no Prefect server)."
        ),
        "",
        "| stage | batches | wall s | rollouts/s | batch s (first / median / last) | batch s, mean of first 10 / last 10 "
        "| checker / rest s per batch (median) | peak RSS MiB | max RSS MiB per quarter |",
        "|---|---:|---:|---:|---|---|---|---:|---|",
    ]
    for stage, seconds in result["timings"].items():
        key = "import" if stage == "import + split" else stage
        ordered = result["batch_times"].get(key, [])
        checker = result["checker_times"].get(key, [])
        batch = f"{ordered[0]:.2f} / {median(ordered):.2f} / {ordered[-1]:.2f}" if ordered else "-"
        ends = f"{mean(ordered[:10]):.2f} / {mean(ordered[-10:]):.2f}" if ordered else "-"
        split = f"{median(checker):.2f} / {median([b - c for b, c in zip(ordered, checker)]):.2f}" if checker else "-"
        points = stage_rss(samples, "check" if stage == "consistency check" else key)
        peak = f"{max(r for _, r in points) / 2**20:.0f}" if points else "-"
        rows_done = n if key == "import" else min(n, len(ordered) * BATCH)
        rate = f"{rows_done / seconds:,.0f}" if stage != "consistency check" else "-"
        count = f"{len(ordered):,}" if ordered else "-"
        lines.append(
            f"| {stage} | {count} | {seconds:,.1f} | {rate} | {batch} | {ends} | {split} | {peak} "
            f"| {quartiles(points)} |"
        )
    lines += [
        "",
        (
            f"Store size afterwards: {result['store_bytes'] / 2**20:,.0f} MiB "
            f"({result['store_bytes'] / n:,.0f} bytes per rollout)."
        ),
        "",
    ]
    if result["existing"]:
        lines += [
            f"No import: STORE already held {n:,} rollouts (left by an earlier soak); only the annotators "
            "named ran, on the rollouts they had not labelled yet.",
            "",
        ]
    for name, k in sample.items():
        lines += [
            f"`{name}` was run on {k} batches spread evenly over its pending rollouts, not on all {n:,}: "
            "its row shows per-batch times at this store size; its wall time covers those batches only.",
            "",
        ]
    lines += [
        "A batch's import row is one file of rows (parse, split, write); an annotate batch's checker time is",
        "the annotator's own work, the rest is reading its inputs and writing its labels (in one store kept",
        "open for the stage, as the annotate flow keeps it). RSS counts this process and its checker workers.",
        "It must not grow with the input:",
        "the per-quarter maxima of each stage should be flat. The one O(N) structure is the list of pending",
        "rollout ids the annotate flow loads (about 65 bytes per rollout). Batch times that rise within a stage",
        "(first / last) mean a batch's cost grows with the store, not with the batch.",
        "",
        "## Consistency afterwards",
        "",
        "| check | value |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:,} |" for name, value in result["checks"].items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--db", help="store path (default: a temporary folder)")
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument(
        "--existing",
        action="store_true",
        help="no import: label the rollouts already in --db (N is taken from the store)",
    )
    parser.add_argument(
        "--annotators", default=",".join(ANNOTATORS), help=f"comma-separated, from {ANNOTATORS} (default: all)"
    )
    parser.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="ANNOTATOR=K",
        help="run only K batches of this annotator, spread over its pending rollouts",
    )
    args = parser.parse_args()
    sample = {}
    for item in args.sample:
        name, _, k = item.partition("=")
        if name not in ANNOTATORS or not k.isdigit() or int(k) < 1:
            parser.error(f"--sample {item!r}: want ANNOTATOR=K with ANNOTATOR one of {ANNOTATORS} and K >= 1")
        sample[name] = int(k)
    names = [name.strip() for name in args.annotators.split(",") if name.strip()]
    if not names or set(names) - set(ANNOTATORS):
        parser.error(f"--annotators {args.annotators!r}: want a comma-separated subset of {ANNOTATORS}")
    if args.existing and not (args.db and Path(args.db).exists()):
        parser.error("--existing needs --db naming a store an earlier soak left")
    n = args.n
    if args.existing:
        from rmforge.store import Store

        with Store(args.db) as store:
            n = store.count("rollouts")
    db = args.db or str(Path(tempfile.mkdtemp(prefix="soak-db-")) / "soak.duckdb")
    result = run(n, db, args.report, sample, names, args.existing)
    print(args.report.read_text())
    bad = {k: v for k, v in result["checks"].items() if (k.startswith(("rollouts without", "duplicate")) and v)}
    if bad:
        raise SystemExit(f"store inconsistent after the soak: {bad}")


if __name__ == "__main__":
    main()
