"""SIGKILL at several moments of import, annotate and curate, then a rerun: every table
equals an uninterrupted run's (same keys, same verdicts; run ids and times aside).
Derived tables are never visible half-rebuilt, even to a concurrent reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rmforge.flows.annotate import annotate
from rmforge.schemas.config import CurationConfig, StepSplitConfig
from rmforge.schemas.tables import TABLES
from rmforge.store import Store
from rmforge.tasks.consensus import compute_consensus
from rmforge.tasks.datasets import build_datasets
from rmforge.tasks.dedupe import deduplicate_rollouts
from rmforge.tasks.rollouts import import_rollouts
from rmforge.tasks.steps import split_rollout_steps

pytestmark = pytest.mark.slow  # SIGKILLed CLI subprocesses

ROOT = Path(__file__).resolve().parent.parent
# Provenance that differs between any two runs by design.
VOLATILE = {"run_id", "created_at", "labeled_at", "started_at", "finished_at", "summary", "config"}
DERIVED = ("step_consensus", "outcome_consensus", "rollout_curation", "preference_pairs", "process_examples")
# Kill points: after the K-th write/commit of a stage (each stage writes its run row first).
# import:4: rollouts and quarantine written, steps not split yet; annotate:14: inside the
# third label transaction; curate:2: inside the consensus rebuild; curate:5: deduplication
# committed, datasets not rebuilt.
KILL_POINTS = ["import:4", "annotate:14", "curate:2", "curate:5"]


def write_rollouts(path: Path, n_problems: int = 6) -> None:
    rows = []
    for p in range(n_problems):
        a, b = p + 2, p + 5
        question = f"Sam has {a} pens and buys {b} more. How many pens?"
        right = f"Step 1: {a} + {b} = {a + b}\nStep 2: So Sam has {a + b} pens.\nThe answer is \\boxed{{{a + b}}}"
        wrong = right.replace(f"= {a + b}", f"= {a + b + 1}").replace(f"{{{a + b}}}", f"{{{a + b + 1}}}")
        for response, model in ((right, "m1"), (wrong, "m1"), (right + " ", "m2")):  # + " ": an exact duplicate
            rows.append(
                {
                    "problem_id": f"pens-{p}",
                    "question": question,
                    "gold_answer": str(a + b),
                    "response": response,
                    "model": model,
                }
            )
    rows.append({"problem_id": "broken", "question": "Q"})  # no response: quarantined
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def snapshot(db: str) -> dict[str, list[tuple]]:
    tables = {}
    with Store(db) as store:
        for name in TABLES:
            if name == "runs":
                continue
            columns = [c for c in TABLES[name].columns if c not in VOLATILE]
            rows = store.execute(f"SELECT {', '.join(columns)} FROM {name} ORDER BY ALL")
            tables[name] = [tuple(row) for row in rows]
    return tables


@pytest.fixture(scope="module")
def pipeline_env(prefect_harness, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    work = tmp_path_factory.mktemp("crash")
    rollouts = work / "rollouts.jsonl"
    write_rollouts(rollouts)
    config = work / "config.json"
    # Small batches: many annotate transactions to land a kill in; no embedder needed.
    config.write_text(json.dumps({"batch_size": 4, "curation": {"near_dedupe": False}}))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PREFECT_API_URL=PREFECT_API_URL.value())
    return work, str(rollouts), str(config), env


def drive(env, db: str, rollouts: str, config: str, kill: str | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "tests.crash_driver", db, rollouts, config] + ([kill] if kill else [])
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture(scope="module")
def reference(pipeline_env):
    work, rollouts, config, env = pipeline_env
    db = str(work / "reference.duckdb")
    done = drive(env, db, rollouts, config)
    assert done.returncode == 0, done.stderr[-3000:]
    writes = json.loads(done.stdout.strip().splitlines()[-1])
    return snapshot(db), writes


def test_kill_points_fall_inside_each_stage(reference) -> None:
    _, writes = reference
    for point in KILL_POINTS:
        stage, k = point.split(":")
        assert int(k) < writes[stage], (point, writes)


def test_sigkill_at_every_kill_point_then_a_rerun_equals_an_uninterrupted_run(pipeline_env, reference) -> None:
    # One chain keeps the CI cost down: each rerun is itself killed at the next point,
    # so every stage also resumes from an earlier crash's leftovers.
    work, rollouts, config, env = pipeline_env
    expected, _ = reference
    db = str(work / "killed.duckdb")
    for kill in KILL_POINTS:
        killed = drive(env, db, rollouts, config, kill)
        assert killed.returncode == -signal.SIGKILL, (kill, killed.stderr[-3000:])
    rerun = drive(env, db, rollouts, config)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    actual = snapshot(db)
    for table in expected:
        assert actual[table] == expected[table], table
    assert expected["step_labels"] and expected["process_examples"]  # the comparison compares something


def test_derived_tables_are_never_seen_half_rebuilt(prefect_harness, tmp_path, db) -> None:
    source = tmp_path / "rollouts.jsonl"
    write_rollouts(source, n_problems=10)
    import_rollouts.fn(db, str(source), "run")
    split_rollout_steps.fn(db, StepSplitConfig())
    annotate(db, ["answer", "z3_arith"])
    config = CurationConfig(near_dedupe=False)

    def curate() -> None:
        compute_consensus.fn(db, ["answer", "z3_arith"], config, "run")
        deduplicate_rollouts.fn(db, config, "run")
        build_datasets.fn(db, config.max_pairs_per_problem, "run")

    curate()
    with Store(db) as store:
        full = {table: store.count(table) for table in DERIVED}
    assert all(full.values())

    seen: list[dict[str, int]] = []
    stop = threading.Event()

    def read() -> None:
        with Store(db) as store:
            while not stop.is_set():
                seen.append({table: store.count(table) for table in DERIVED})

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):  # each rebuild deletes and rewrites every derived table
            curate()
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 10
    assert all(counts == full for counts in seen), [c for c in seen if c != full][:3]
