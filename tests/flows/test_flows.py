"""Flows end to end on imported rollouts (no LLM): import -> annotate -> curate -> export."""

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from rmforge.cli import app
from rmforge.flows.annotate import annotate
from rmforge.flows.curate import curate
from rmforge.flows.export import export
from rmforge.flows.import_rollouts import import_rollouts
from rmforge.schemas.config import GeneratorConfig
from rmforge.store import Store
from rmforge.tasks.annotate import make_annotator, pending_rollout_ids
from tests.tasks.test_annotate import claim, claimants, start_runs, unstartable_vllm_engine

pytestmark = pytest.mark.slow  # Prefect flows and the CLI end to end

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
            {
                "problem_id": f"pens-{p}",
                "question": q,
                "gold_answer": str(a + b),
                "response": right + " ",
                "model": "m2",
            },
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
    # only the wrong rollouts yield examples: z3_arith refutes their first step; finding nothing
    # false in the right ones confirms nothing (refute-only), so those have no decided step
    assert first["preference_pairs"] == 4 and first["process_examples"] == 4

    with Store(db) as store:
        wrong_first_steps = store.rows("SELECT labels FROM process_examples WHERE NOT labels[1]")
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
    assert stats["process"]["rows"] == 4 and stats["preference"]["rows"] == 4
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


def test_annotate_leaves_a_live_runs_claims_and_takes_over_a_crashed_runs(prefect_harness, tmp_path, db):
    write_rollouts(tmp_path / "r.jsonl")
    import_rollouts(str(tmp_path / "r.jsonl"), db)
    z3 = make_annotator("z3_arith", None, GeneratorConfig())
    pending = pending_rollout_ids.fn(db, z3)
    start_runs(db, {"crashed": 0, "alive": 0})
    claim(db, z3, "crashed", pending, 5)
    alive = claim(db, z3, "alive", pending, 3)
    start_runs(db, {"crashed": 600})  # its heartbeat stopped ten minutes ago

    summary = annotate(db, ["z3_arith"], batch_size=2)["z3_arith"]
    assert summary["rollouts"] == 12 - 3 and summary["left_to_other_runs"] == 3
    assert claimants(db) == {rollout_id: "alive" for rollout_id in alive}
    assert pending_rollout_ids.fn(db, z3) == alive == pending[5:8]


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


def test_logic_problems_through_the_flows(prefect_harness, tmp_path, db):
    """FoVer-style data end to end: formula steps checked by Z3, answers by the verifier."""
    from rmforge.problems.logic import generate_logic_problems

    problems = generate_logic_problems(6, seed=2)
    rows = []
    for p in problems:
        good = [f"Step {i + 1}: {s}" for i, s in enumerate(p.reference_steps)] + [f"Answer: {p.gold_answer}"]
        bad = (
            ["Step 1: Happy(nobody_here)"] + good[1:-1] + [f"Answer: {'False' if p.gold_answer != 'False' else 'True'}"]
        )
        for response in ("\n".join(good), "\n".join(bad)):
            rows.append(
                {
                    "problem_id": p.problem_id,
                    "question": p.question,
                    "gold_answer": p.gold_answer,
                    "response": response,
                    "domain": "logic",
                }
            )
    path = tmp_path / "logic.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    import_rollouts(str(path), db)
    with Store(db) as store:  # the import carries the domain; logic problems need their premises too
        store.write("problems", problems, on_conflict="replace")
    annotate(db, ["answer", "z3_logic"])
    curate(db, ["answer", "z3_logic"])
    with Store(db) as store:
        first_steps = store.rows(
            "SELECT l.verdict, r.response LIKE 'Step 1: Happy(nobody_here)%' AS bad FROM step_labels l "
            "JOIN rollouts r USING (rollout_id) WHERE l.annotator = 'z3_logic' AND l.step_index = 0"
        )
        assert {(r["verdict"], r["bad"]) for r in first_steps} == {("correct", False), ("incorrect", True)}
        outcomes = store.rows("SELECT verdict, count(*) AS n FROM outcome_labels GROUP BY verdict ORDER BY verdict")
        assert outcomes == [{"verdict": "correct", "n": 6}, {"verdict": "incorrect", "n": 6}]
        assert store.count("preference_pairs") == 6
        assert store.count("process_examples") == 12


def test_cli_import_and_annotate(prefect_harness, tmp_path, db):
    write_rollouts(tmp_path / "r.jsonl", n_problems=2)
    runner = CliRunner()
    result = runner.invoke(app, ["import", "rollouts", str(tmp_path / "r.jsonl"), "--db", db])
    assert result.exit_code == 0, result.output
    assert f"Next: rmforge annotate --annotator answer,z3_arith --db {db}" in result.output
    result = runner.invoke(app, ["annotate", "--annotator", "answer,z3_arith", "--db", db])
    assert result.exit_code == 0, result.output
    assert f"Next: rmforge curate --annotators answer,z3_arith --db {db}" in result.output
    result = runner.invoke(app, ["curate", "--annotators", "answer,z3_arith", "--db", db])
    assert result.exit_code == 0, result.output
    assert f"Next: rmforge export --out data/exports --db {db}" in result.output
    assert "    no process example: " in result.output  # its reasons, as the README says
    result = runner.invoke(
        app, ["sql", "SELECT annotator, count(*) AS n FROM step_labels GROUP BY 1", "--db", db, "--format", "json"]
    )
    assert json.loads(result.output) == [{"annotator": "z3_arith", "n": 12}]  # 6 rollouts x 2 steps
    result = runner.invoke(app, ["annotate", "--annotator", "nonexistent", "--db", db])
    assert result.exit_code != 0


def label_rows(db):
    with Store(db) as store:
        return {
            (row["annotator"], row["rollout_id"], row["step_index"]): (row["verdict"], row["reason"], row["run_id"])
            for row in store.rows(
                "SELECT annotator, rollout_id, step_index, verdict, reason, run_id FROM step_labels UNION ALL "
                "SELECT annotator, rollout_id, NULL, verdict, reason, run_id FROM outcome_labels"
            )
        }


def test_cli_annotate_retry_errors_relabels_exactly_the_errored_rollouts(prefect_harness, tmp_path, db):
    write_rollouts(tmp_path / "r.jsonl", n_problems=2)
    runner = CliRunner()
    assert runner.invoke(app, ["import", "rollouts", str(tmp_path / "r.jsonl"), "--db", db]).exit_code == 0
    assert runner.invoke(app, ["annotate", "--annotator", "answer,z3_arith", "--db", db]).exit_code == 0
    labelled = label_rows(db)
    first, second, third = sorted({rollout for _, rollout, _ in labelled})[:3]
    # As an earlier run left them when every rollout's labelling raised (an engine that did not start).
    with Store(db) as store:
        store.execute(
            "UPDATE step_labels SET verdict = 'unknown', reason = 'annotator error: RuntimeError: boom' "
            "WHERE annotator = 'z3_arith' AND rollout_id IN (?, ?)",
            [first, second],
        )
        store.execute(
            "UPDATE outcome_labels SET verdict = 'unknown', reason = 'annotator error: RuntimeError: boom' "
            "WHERE annotator = 'answer' AND rollout_id = ?",
            [third],
        )
    errored = label_rows(db)

    plain = runner.invoke(app, ["annotate", "--annotator", "z3_arith", "--db", db])
    assert plain.exit_code == 0 and "z3_arith: 0 rollouts labelled" in plain.stdout, plain.output
    assert label_rows(db) == errored

    result = runner.invoke(app, ["annotate", "--annotator", "z3_arith", "--retry-errors", "--db", db])
    assert result.exit_code == 0, result.output
    assert "z3_arith: 2 rollouts labelled (2 errored rollouts retried, 4 step labels)" in result.stdout
    relabelled = label_rows(db)
    retried = {key for key in labelled if key[0] == "z3_arith" and key[1] in (first, second)}
    assert len(retried) == 4
    assert {key: relabelled[key][:2] for key in retried} == {key: labelled[key][:2] for key in retried}
    assert all(relabelled[key][2] != errored[key][2] for key in retried)  # written by the new run
    assert {key: row for key, row in relabelled.items() if key not in retried} == {
        key: row for key, row in errored.items() if key not in retried
    }  # the answer label keeps its error


def test_cli_annotate_with_an_engine_that_does_not_start_fails_in_one_line(prefect_harness, tmp_path, db, monkeypatch):
    write_rollouts(tmp_path / "r.jsonl", n_problems=1)
    runner = CliRunner()
    assert runner.invoke(app, ["import", "rollouts", str(tmp_path / "r.jsonl"), "--db", db]).exit_code == 0
    engine = unstartable_vllm_engine(tmp_path, monkeypatch)
    config = tmp_path / "config.yaml"
    config.write_text(f"generator:\n  backend: vllm\n  model: {engine.model}\n")
    result = runner.invoke(app, ["annotate", "--annotator", "judge", "--config", str(config), "--db", db])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: BackendUnavailable: the vllm backend for {engine.model} did not start")
    assert result.stderr.count("\n") == 1 and len(result.stderr) < 600, result.stderr
    assert result.stdout == ""
    with Store(db) as store:
        assert store.count("step_labels") + store.count("outcome_labels") + store.count("annotator_costs") == 0
        assert store.count("batch_claims") == 0  # the failed batch's rollouts are free for the next run
        run = store.rows("SELECT status, summary FROM runs WHERE flow = 'annotate'")[0]
    assert run["status"] == "failed"
    assert json.loads(run["summary"])["judge"] == {"status": "failed", "rollouts": 0, "still_pending": 3}
