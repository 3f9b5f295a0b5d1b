"""The Python API (`import rmforge`): cheap to import, each stage a function that returns what its
run did, errors as exceptions that name the field (before any work), the store into Arrow and Polars."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

import rmforge
from rmforge.store import Store as WritableStore
from tests.builders import make_problem
from tests.servers import ChatServer

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROLLOUTS = REPO / "data" / "examples" / "rollouts.jsonl"
VOTERS = ["answer", "z3_arith"]


@pytest.mark.slow  # a fresh interpreter
def test_import_and_every_public_name_load_no_orchestrator_or_engine():
    code = (
        "import sys, rmforge\n"
        "for name in rmforge.__all__: getattr(rmforge, name)\n"
        "print(' '.join(m for m in ('prefect', 'vllm', 'torch') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_public_names_are_listed_and_unknown_ones_are_attribute_errors():
    assert set(rmforge.__all__) <= set(dir(rmforge))
    assert {"run", "generate", "annotate", "curate", "export", "eval", "Store", "PipelineConfig"} <= set(
        rmforge.__all__
    )
    assert rmforge.eval is rmforge.api.evaluate and rmforge.PipelineConfig is rmforge.schemas.config.PipelineConfig
    with pytest.raises(AttributeError, match="no attribute 'runn'"):
        _ = rmforge.runn


def test_a_pipeline_result_names_the_curated_counts_and_the_exported_files():
    summary = {
        "curate": {"datasets": {"preference_pairs": 2, "process_examples": 3, "no_process_example": {}}},
        "export": {"process": {"rows": 3}, "preference": {"rows": 2}, "resumes": "an earlier run"},
    }
    result = rmforge.PipelineResult("run", "store.duckdb", summary, Path("out"))
    assert result.datasets == {"preference_pairs": 2, "process_examples": 3}
    assert result.files == {"process": Path("out/process.parquet"), "preference": Path("out/preference.parquet")}
    without_export = {"curate": summary["curate"]}  # a pipeline given no export folder
    assert rmforge.PipelineResult("run", "store.duckdb", without_export, None).files == {}


def config_changed_after_validation():
    config = rmforge.PipelineConfig()
    config.sampling.n = 0  # pydantic checks no assignment: the functions check the config again
    return config


@pytest.mark.parametrize(
    "config, message",
    [
        ({"batch_size": 0}, "config: batch_size: Input should be greater than or equal to 1"),
        ({"generator": {"bakend": "openai"}}, "config: generator.bakend: Extra inputs are not permitted"),
        ({"annotators": ["answer", "nope"]}, "annotators: unknown annotator 'nope' (known: "),
        (
            {"annotators": ["answer"], "annotator_options": {"answer": {"bogus": 1}}},
            "annotator_options.answer: bogus: Extra inputs are not permitted",
        ),
        ({"compute": {"address": "tcp://10.0.0.1:8786"}}, "compute.address: needs compute.task_runner dask or ray"),
        (config_changed_after_validation(), "config: sampling.n: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_config_raises_a_value_error_naming_the_field_before_any_work(tmp_path, config, message):
    db = tmp_path / "store.duckdb"
    with pytest.raises(ValueError) as raised:
        rmforge.run(config, db=db)
    assert isinstance(raised.value, rmforge.ConfigError)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not db.exists()  # the pipeline would have created it


def test_a_config_file_is_read_and_named_in_its_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("batch_size: 7\nannotators: [answer]\n")
    assert (
        rmforge.load_config(good)
        == rmforge.load_config(str(good))
        == rmforge.PipelineConfig(batch_size=7, annotators=["answer"])
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling: {n: 4, temprature: 0.5}\n")
    with pytest.raises(rmforge.ConfigError, match=re.escape(f"{bad}: sampling.temprature: Extra inputs")):
        rmforge.curate(VOTERS, db=tmp_path / "store.duckdb", config=bad)
    with pytest.raises(rmforge.ConfigError, match="does not exist"):
        rmforge.annotate(VOTERS, config=tmp_path / "none.yaml")
    with pytest.raises(TypeError, match="expected a PipelineConfig, a dict or a file path, got list"):
        rmforge.load_config([("batch_size", 7)])


def test_arguments_are_checked_before_any_work(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(rmforge.ConfigError, match=re.escape(f"export: {a_file} is a file, expected a folder")):
        rmforge.run({"annotators": VOTERS}, db=tmp_path / "store.duckdb", export=a_file)
    with pytest.raises(rmforge.ConfigError, match="datasets: unknown dataset 'bogus' "):
        rmforge.export(db=tmp_path / "store.duckdb", datasets=["process", "bogus"])
    with pytest.raises(rmforge.ConfigError, match="policies: unknown 'bogus' "):
        rmforge.eval(EXAMPLE_ROLLOUTS, "answer", policies="ranked,bogus", out=tmp_path / "eval")
    missing = tmp_path / "missing.duckdb"
    for stage in (
        lambda: rmforge.annotate("answer", db=missing),
        lambda: rmforge.curate(db=missing),
        lambda: rmforge.export(db=missing, out=tmp_path / "out"),
    ):
        with pytest.raises(rmforge.UserError, match="no rmforge database at"):
            stage()
    assert not missing.exists() and not (tmp_path / "out").exists() and not (tmp_path / "eval").exists()


def test_annotators_that_cannot_run_here_are_refused_before_any_flow(db, monkeypatch):
    with WritableStore(db) as store:
        store.write("problems", [make_problem()])
    monkeypatch.setenv("PATH", "/nonexistent")  # no lean binary
    with pytest.raises(rmforge.AnnotatorsUnavailable, match=r"^lean: unavailable here \(") as raised:
        rmforge.annotate(["lean"], db=db)
    assert raised.value.exit_code == 2
    with WritableStore(db, read_only=True) as store:
        assert store.count("runs") == 0


def test_errors_raised_below_the_api_for_the_user_are_user_errors(tmp_path):
    """One type for what the user must fix, from the bottom layer up: the command line catches it
    and prints its message as one line."""
    from rmforge.exports.files import ExportError
    from rmforge.problems.records import InputFileError
    from rmforge.schemas.errors import UserError
    from rmforge.tasks.hub import HubError

    assert rmforge.UserError is UserError
    for error in (rmforge.ConfigError, rmforge.AnnotatorsUnavailable, InputFileError, ExportError, HubError):
        assert issubclass(error, rmforge.UserError), error
        assert "user_facing" not in vars(error), error
    assert issubclass(rmforge.ConfigError, ValueError) and issubclass(InputFileError, ValueError)
    empty = tmp_path / "rows.jsonl"
    empty.write_text("")
    with pytest.raises(rmforge.UserError, match="holds no records") as raised:
        rmforge.import_rollouts(empty, db=tmp_path / "store.duckdb")
    assert isinstance(raised.value, InputFileError)


def test_store_opens_read_only_and_answers_in_arrow_and_polars(db, tmp_path):
    problem = make_problem()
    with WritableStore(db) as store:
        store.write("problems", [problem])
    with rmforge.Store(db) as store:
        table = store.sql("SELECT problem_id, gold_answer FROM problems WHERE problem_id = ?", [problem.problem_id])
        frame = store.table("problems")
        count = store.polars("SELECT count(*) AS n FROM problems")
        with pytest.raises(duckdb.Error, match="read-only"):
            store.execute("DELETE FROM problems")
        with pytest.raises(ValueError, match=r"no table or view 'problem' .*tables: problems, "):
            store.table("problem")
    assert isinstance(table, pa.Table) and table.to_pylist() == [{"problem_id": problem.problem_id, "gold_answer": "7"}]
    assert isinstance(frame, pl.DataFrame) and frame["question"].to_list() == [problem.question]
    assert isinstance(count, pl.DataFrame) and count["n"].item() == 1
    with pytest.raises(FileNotFoundError, match="no rmforge database"):
        rmforge.Store(tmp_path / "none.duckdb")


def test_store_opens_a_ducklake_by_its_url(lake_db):
    with rmforge.Store(lake_db, read_only=False) as store:
        store.write("problems", [make_problem()])
    with rmforge.Store(lake_db) as store:
        assert store.is_lake and store.table("problems")["gold_answer"].to_list() == ["7"]


def test_the_stages_return_their_runs_counts_and_files(prefect_harness, tmp_path):
    db = tmp_path / "store.duckdb"
    imported = rmforge.import_rollouts(EXAMPLE_ROLLOUTS, db=db)
    labelled = rmforge.annotate(",".join(VOTERS), db=db)
    curated = rmforge.curate(VOTERS, db=db, config={"curation": {"near_dedupe": False}})
    exported = rmforge.export(db=db, out=tmp_path / "out", datasets="process,preference")
    with rmforge.Store(db) as store:
        runs = dict(store.execute("SELECT run_id, flow FROM runs WHERE status = 'completed'"))
        stored = store.counts()
    assert runs == {
        imported.run_id: "import-rollouts",
        labelled.run_id: "annotate",
        curated.run_id: "curate",
        exported.run_id: "export",
    }
    assert {imported.db, labelled.db, curated.db, exported.db} == {str(db)}
    assert imported.summary["rollouts"] == stored["rollouts"] == 6
    assert labelled.summary["answer"]["outcome_labels"] == 6 and labelled.summary["z3_arith"]["rollouts"] == 6
    assert curated.datasets == {
        "preference_pairs": stored["preference_pairs"],
        "process_examples": stored["process_examples"],
    }
    assert curated.datasets["preference_pairs"] > 0 and curated.datasets["process_examples"] > 0
    assert exported.files == {name: tmp_path / "out" / f"{name}.parquet" for name in ("process", "preference")}
    assert pl.read_parquet(exported.files["process"]).height == stored["process_examples"]


def test_generate_samples_rollouts_from_a_served_model(prefect_harness, db):
    server = ChatServer(lambda body, index: "Step 1: 2 + 2 = 4\nThe answer is \\boxed{4}")
    try:
        generated = rmforge.generate(
            {
                "generator": {"backend": "openai", "model": "served", "base_url": server.url},
                "problems": {"count": 2},
                "sampling": {"n": 3},
            },
            db=db,
        )
    finally:
        server.close()
    with rmforge.Store(db) as store:
        runs = dict(store.execute("SELECT run_id, flow FROM runs"))
        rollouts = store.count("rollouts")
    assert runs == {generated.run_id: "generate"}
    assert generated.summary["problems"] == 2 and generated.summary["new_rollouts"] == rollouts == 6


def test_eval_scores_annotators_against_human_labels(prefect_harness, tmp_path):
    solutions = tmp_path / "labelled.json"
    solutions.write_text(
        json.dumps(
            [
                {
                    "id": "right",
                    "problem": "Sam has 2 pens and buys 3 more. How many pens?",
                    "steps": ["Sam has 2 + 3 = 5 pens.", "The answer is 5."],
                    "label": -1,
                    "final_answer_correct": True,
                },
                {
                    "id": "wrong",
                    "problem": "Ann has 4 pens and buys 3 more. How many pens?",
                    "steps": ["Ann has 4 + 3 = 8 pens.", "The answer is 8."],
                    "label": 0,
                    "final_answer_correct": False,
                },
            ]
        )
    )
    (tmp_path / "labelled_gold_answers.json").write_text(json.dumps({"right": "5", "wrong": "7"}))
    scored = rmforge.eval(solutions, VOTERS, policies=["ranked"], out=tmp_path / "report")
    assert [s["name"] for s in scored.scores] == ["answer", "z3_arith", "ranked(answer,z3_arith)"]
    z3 = scored.scores[1]
    assert (z3["incorrect_labels"], z3["incorrect_precision"]) == (1, 1.0)  # it refutes 4 + 3 = 8, and only that
    assert scored.db == str(tmp_path / "report" / "eval.duckdb") and scored.imported["rollouts"] == 2
    assert set(scored.files) == {"report", "chart", "metrics"} and all(p.is_file() for p in scored.files.values())
