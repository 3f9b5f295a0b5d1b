"""Two rmforge commands on one DuckDB file at once: both succeed and the tables equal a sequential run's;
two annotates share the work instead of both doing all of it.

Real processes through the CLI, on imported rollouts with the `answer` and `z3_arith` annotators
(no LLM), in small batches so that every command opens and closes the store many times.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmforge.schemas.tables import TABLES
from rmforge.store import Store

pytestmark = pytest.mark.slow  # CLI subprocesses on one store

ROOT = Path(__file__).resolve().parents[2]
ANNOTATE = ["annotate", "--annotator", "answer,z3_arith", "--batch-size", "3"]
VOLATILE = {"run_id", "created_at", "labeled_at", "started_at", "finished_at"}


@pytest.fixture(scope="module")
def cli_env(prefect_harness):
    """Subprocesses share the test session's Prefect server instead of each starting one."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}


def start(cli_env, args, db, log):
    out = open(log, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "rmforge.cli", *args, "--db", str(db)], stdout=out, stderr=subprocess.STDOUT, env=cli_env
    )


def finish(process, log):
    assert process.wait(timeout=900) == 0, Path(log).read_text()[-3000:]


def run(cli_env, args, db, log):
    finish(start(cli_env, args, db, log), log)


def write_rollouts(path, n_problems=8):
    rows = []
    for p in range(n_problems):
        a, b = p + 2, p + 5
        question = f"Sam has {a} pens and buys {b} more. How many pens?"
        for model, shown in (("m1", a + b), ("m2", a + b + 1), ("m3", a + b)):
            response = (
                f"Step 1: {a} + {b} = {shown}\nStep 2: So Sam has {shown} pens.\nThe answer is \\boxed{{{shown}}}"
            )
            rows.append(
                {
                    "problem_id": f"pens-{p}",
                    "question": question,
                    "gold_answer": str(a + b),
                    "response": response + " " * (model == "m3"),
                    "model": model,
                }
            )
    rows.append({"problem_id": "broken", "question": "Q"})  # quarantined
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("concurrency")


@pytest.fixture(scope="module")
def imported(cli_env, work):
    """Rollouts imported and split, not annotated: each test starts from a copy."""
    write_rollouts(work / "rollouts.jsonl")
    run(cli_env, ["import", "rollouts", str(work / "rollouts.jsonl")], work / "imported.duckdb", work / "import.log")
    return work / "imported.duckdb"


@pytest.fixture(scope="module")
def reference(cli_env, work, imported):
    """The same import, annotated by one command alone."""
    db = work / "reference.duckdb"
    shutil.copy(imported, db)
    run(cli_env, ANNOTATE, db, work / "reference.log")
    return content(db)


def content(db):
    """Every table's rows without run ids and timestamps, sorted; the runs table is compared apart."""
    tables = {}
    with Store(db, read_only=True) as store:
        for name, spec in TABLES.items():
            if name == "runs":
                continue
            columns = ", ".join(f'"{c}"' for c in spec.columns if c not in VOLATILE)
            tables[name] = sorted(map(repr, store.execute(f"SELECT {columns} FROM {name}")))
    return tables


def runs(db, flow):
    with Store(db, read_only=True) as store:
        return store.rows("SELECT status, started_at, finished_at FROM runs WHERE flow = ? ORDER BY started_at", [flow])


def labelled_by_each_run(db, annotator):
    """The rollouts each annotate run labelled, as its summary reports them, oldest run first."""
    with Store(db, read_only=True) as store:
        return [
            json.loads(row["summary"])[annotator]["rollouts"]
            for row in store.rows("SELECT summary FROM runs WHERE flow = 'annotate' ORDER BY started_at")
        ]


def overlapped(first, second):
    assert first["status"] == second["status"] == "completed"
    return second["started_at"] < first["finished_at"]


def two_annotates_at_once(cli_env, command, source, work, name):
    """A copy of `source` that two `command`s labelled side by side; its path.

    Two commands started together usually overlap; on a loaded machine one may start only
    after the other ended, which tests nothing: then they are run again on a fresh copy."""
    for attempt in range(3):
        db = work / f"{name}-{attempt}.duckdb"
        shutil.copy(source, db)
        logs = [work / f"{name}-a-{attempt}.log", work / f"{name}-b-{attempt}.log"]
        processes = [start(cli_env, command, db, log) for log in logs]
        for process, log in zip(processes, logs):
            finish(process, log)
        if overlapped(*runs(db, "annotate")):
            return db
    pytest.fail("the two commands never ran at the same time in 3 attempts")


def test_two_annotates_at_once(cli_env, work, imported, reference):
    db = two_annotates_at_once(cli_env, ANNOTATE, imported, work, "annotate-twice")
    assert content(db) == reference
    assert len(reference["step_labels"]) > 0 and len(reference["outcome_labels"]) > 0


def test_two_imports_at_once(cli_env, work, imported):
    db = work / "import-twice.duckdb"
    logs = [work / "import-a.log", work / "import-b.log"]
    processes = [start(cli_env, ["import", "rollouts", str(work / "rollouts.jsonl")], db, log) for log in logs]
    for process, log in zip(processes, logs):
        finish(process, log)
    # An import is one short transaction now: the two may or may not overlap; both must succeed.
    assert [r["status"] for r in runs(db, "import-rollouts")] == ["completed", "completed"]
    assert content(db) == content(imported)


def test_sql_in_a_loop_during_annotate(cli_env, work, imported, reference):
    db = work / "annotate-read.duckdb"
    shutil.copy(imported, db)
    annotate = start(cli_env, ANNOTATE, db, work / "annotate-read.log")
    query = "SELECT (SELECT count(*) FROM step_labels) + (SELECT count(*) FROM outcome_labels) AS labels"
    seen = []
    while annotate.poll() is None:
        result = subprocess.run(
            [sys.executable, "-m", "rmforge.cli", "sql", query, "--db", str(db), "--format", "csv"],
            capture_output=True,
            text=True,
            env=cli_env,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        seen.append(int(result.stdout.splitlines()[1]))
        time.sleep(0.1)
    finish(annotate, work / "annotate-read.log")
    assert content(db) == reference
    total = len(reference["step_labels"]) + len(reference["outcome_labels"])
    assert seen == sorted(seen) and all(0 <= n <= total for n in seen)
    assert any(0 < n < total for n in seen), f"no read landed while annotate was writing: {seen}"


SHARED = ["annotate", "--annotator", "z3_arith", "--batch-size", "50"]


@pytest.fixture(scope="module")
def imported_many(cli_env, work):
    """About 2,000 rollouts: enough labelling that two commands started together overlap for a while."""
    write_rollouts(work / "many.jsonl", n_problems=667)
    db = work / "imported-many.duckdb"
    run(cli_env, ["import", "rollouts", str(work / "many.jsonl")], db, work / "import-many.log")
    return db


def test_two_annotates_share_the_work(cli_env, work, imported_many):
    alone = work / "shared-alone.duckdb"
    shutil.copy(imported_many, alone)
    run(cli_env, SHARED, alone, work / "shared-alone.log")
    (work_alone,) = labelled_by_each_run(alone, "z3_arith")
    assert work_alone == 2001
    db = two_annotates_at_once(cli_env, SHARED, imported_many, work, "shared")
    work_shared = labelled_by_each_run(db, "z3_arith")
    assert sum(work_shared) <= 1.1 * work_alone, work_shared
    assert content(db) == content(alone)
