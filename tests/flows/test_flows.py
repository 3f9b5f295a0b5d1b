"""Flows end to end on imported rollouts (no LLM): import -> annotate -> curate -> export."""

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.annotate import annotate
from flows.curate import curate
from flows.export import export
from flows.import_rollouts import import_rollouts
from rmforge.cli import app
from tasks.store import Store

ANNOTATORS = ["answer", "z3_arith"]


def write_rollouts(path, n_problems=4):
    rows = []
    for p in range(n_problems):
        a, b = p + 2, p + 5
        q = f"Sam has {a} pens and buys {b} more. How many pens?"
        right = f"Step 1: {a} + {b} = {a + b}\nStep 2: So Sam has {a + b} pens.\nThe answer is \\boxed{{{a + b}}}"
        wrong = f"Step 1: {a} + {b} = {a + b + 1}\nStep 2: So Sam has {a + b + 1} pens.\nThe answer is \\boxed{{{a + b + 1}}}"
        rows += [
            {"problem_id": f"pens-{p}", "question": q, "gold_answer": str(a + b), "response": right, "model": "m1"},
            {"problem_id": f"pens-{p}", "question": q, "gold_answer": str(a + b), "response": wrong, "model": "m1"},
            {"problem_id": f"pens-{p}", "question": q, "gold_answer": str(a + b), "response": right + " ", "model": "m2"},
        ]
    rows.append({"problem_id": "broken", "question": "Q"})  # no response: quarantined
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


def table_counts(db):
    with Store(db) as store:
        return store.counts()


def test_flows_end_to_end_and_rerun_adds_nothing(prefect_harness, tmp_path, db):
    source = tmp_path / "rollouts.jsonl"
    write_rollouts(source)

    summary = import_rollouts(str(source), db)
    assert summary["rollouts"] == 12 and summary["quarantined"] == 1
    labels = annotate(db, ANNOTATORS)
    assert labels["answer"]["outcome_labels"] == 12
    curated = curate(db, ANNOTATORS)
    assert curated["dedupe"]["exact_duplicate"] == 4  # the "+ space" copies
    first = table_counts(db)
    assert first["preference_pairs"] == 4 and first["process_examples"] == 8

    with Store(db) as store:
        wrong_first_steps = store.rows(
            "SELECT labels FROM process_examples WHERE NOT labels[1]")
        assert len(wrong_first_steps) == 4  # the wrong rollouts end at their false first step
        assert all(r["labels"] == [False] for r in wrong_first_steps)
        q = store.rows("SELECT field, reason FROM quarantine")
        assert q[0]["field"] == "response"
        runs = store.rows("SELECT flow, status FROM runs ORDER BY started_at")
        assert [r["flow"] for r in runs] == ["import-rollouts", "annotate", "curate"]
        assert {r["status"] for r in runs} == {"completed"}

    # rerun everything: no duplicate rows anywhere except the new run records
    import_rollouts(str(source), db)
    assert annotate(db, ANNOTATORS)["answer"]["rollouts"] == 0
    curate(db, ANNOTATORS)
    second = table_counts(db)
    assert {k: v for k, v in second.items() if k != "runs"} == {k: v for k, v in first.items() if k != "runs"}

    out = tmp_path / "exports"
    stats = export(db, str(out))
    assert stats["process"]["rows"] == 8 and stats["preference"]["rows"] == 4
    process = pl.read_parquet(out / "process.parquet")
    assert process.columns[:4] == ["prompt", "completions", "labels", "soft_labels"]
    preference = [json.loads(line) for line in (out / "preference.jsonl").read_text().splitlines()]
    assert set(preference[0]) >= {"prompt", "chosen", "rejected"}
    assert (out / "hf" / "kto" / "dataset_info.json").exists()
    assert "TRL stepwise supervision" in (out / "README.md").read_text()


def test_unavailable_annotator_is_reported_not_faked(prefect_harness, tmp_path, db, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    write_rollouts(tmp_path / "r.jsonl", n_problems=1)
    import_rollouts(str(tmp_path / "r.jsonl"), db)
    summary = annotate(db, ["lean"])
    assert summary["lean"]["status"] == "unavailable" and "lean" in summary["lean"]["reason"]
    with Store(db) as store:
        assert store.count("step_labels") == 0


def test_cli_sql_formats(tmp_path, db):
    with Store(db) as store:
        store.execute("SELECT 1")
    from tests.builders import make_problem
    with Store(db) as store:
        store.write("problems", [make_problem()])
    runner = CliRunner()
    result = runner.invoke(app, ["sql", "SELECT problem_id, gold_answer FROM problems", "--db", db, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"problem_id": make_problem().problem_id, "gold_answer": "7"}]
    result = runner.invoke(app, ["sql", "SELECT gold_answer FROM problems", "--db", db, "--format", "csv"])
    assert result.output.splitlines() == ["gold_answer", "7"]
    result = runner.invoke(app, ["sql", "DELETE FROM problems", "--db", db])
    assert result.exit_code == 1
    result = runner.invoke(app, ["sql", "SELECT 1", "--db", str(tmp_path / "none.duckdb")])
    assert result.exit_code == 1 and "no rmforge database" in result.output
