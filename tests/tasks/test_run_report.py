"""Run reports: pairwise agreement and kappa, label balance, cost per stage, the PNG."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from rmforge.schemas.records import AnnotatorCost, RunRecord, StepConsensus, StepLabel
from rmforge.store import Store
from rmforge.tasks.run_report import (
    cohen_kappa,
    compute_report,
    draw_report,
    label_balance,
    pairwise_agreement,
    report_dir,
    stage_costs,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def label(annotator, step, verdict, *, at=0, config_hash="c1", rollout="r1"):
    return StepLabel(
        rollout_id=rollout,
        step_index=step,
        annotator=annotator,
        annotator_version="1",
        config_hash=config_hash,
        verdict=verdict,
        run_id="test",
        labeled_at=T0 + timedelta(seconds=at),
    )


# Hand-counted table of human (rows) vs mc (columns) on the 10 steps both decided:
#                 mc correct  mc incorrect
# human correct        4           1
# human incorrect      2           3
# observed 7/10; chance 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa (0.7 - 0.5) / (1 - 0.5) = 0.4
HUMAN = ["correct"] * 5 + ["incorrect"] * 5
MC = ["correct"] * 4 + ["incorrect"] + ["correct"] * 2 + ["incorrect"] * 3


@pytest.fixture()
def labelled(db):
    rows = [label("human", s, v, at=10) for s, v in enumerate(HUMAN)]
    rows += [label("mc", s, v, at=10, config_hash="c2") for s, v in enumerate(MC)]
    rows.append(label("mc", 0, "incorrect", at=1))  # an older mc label on step 0: superseded
    rows += [label("human", 10, "unknown", at=10), label("mc", 10, "incorrect", at=10)]  # human undecided
    rows.append(label("mc", 11, "correct", at=10))  # mc alone
    rows += [label("z3_arith", s, "incorrect" if s >= 8 else "correct", at=10) for s in range(10)]
    with Store(db) as store:
        store.write("step_labels", rows)
    return db


def test_kappa_of_the_hand_counted_table(labelled):
    with Store(labelled) as store:
        pairs = {(p["a"], p["b"]): p for p in pairwise_agreement(store)}
    human_mc = pairs[("human", "mc")]
    assert human_mc["steps"] == 10
    assert (human_mc["both_correct"], human_mc["both_incorrect"]) == (4, 3)
    assert (human_mc["a_correct_b_incorrect"], human_mc["a_incorrect_b_correct"]) == (1, 2)
    assert human_mc["agreement"] == pytest.approx(0.7)
    assert human_mc["kappa"] == pytest.approx(0.4)
    # z3_arith refutes steps 8 and 9 only; against human: cc 5, ii 2, human-incorrect/z3-correct 3
    human_z3 = pairs[("human", "z3_arith")]
    assert (human_z3["both_correct"], human_z3["both_incorrect"], human_z3["a_incorrect_b_correct"]) == (5, 2, 3)
    assert human_z3["kappa"] == pytest.approx((0.7 - (0.5 * 0.8 + 0.5 * 0.2)) / (1 - 0.5))
    assert set(pairs) == {("human", "mc"), ("human", "z3_arith"), ("mc", "z3_arith")}


def test_kappa_matches_the_annotator_agreement_view(labelled):
    """One formula: the review helper's SQL view scores mc against human the same way."""
    with Store(labelled) as store:
        view = store.rows(
            "SELECT kappa, n FROM annotator_agreement WHERE level = 'step' AND annotator = 'mc' AND config_hash = 'c2'"
        )
        pair = next(p for p in pairwise_agreement(store) if (p["a"], p["b"]) == ("human", "mc"))
    assert view[0]["n"] == 10
    assert view[0]["kappa"] == pytest.approx(pair["kappa"])


def test_kappa_edge_cases():
    assert cohen_kappa(0, 0, 0, 0) is None
    assert cohen_kappa(5, 0, 0, 0) is None  # both always `correct`: chance agreement is total
    assert cohen_kappa(3, 2, 0, 0) == pytest.approx(1.0)
    assert cohen_kappa(0, 0, 3, 3) == pytest.approx(-1.0)


def test_label_balance_marks_refute_only_and_counts_consensus(labelled):
    with Store(labelled) as store:
        store.write(
            "step_consensus",
            [
                StepConsensus(
                    rollout_id="r1", step_index=s, verdict=v, agreed=v != "unknown", annotators=["mc"], run_id="test"
                )
                for s, v in enumerate(["correct", "correct", "incorrect", "unknown"])
            ],
        )
        balance = {row["labels"]: row for row in label_balance(store)}
    assert {k: balance["step: mc"][k] for k in ("correct", "incorrect", "unknown")} == {
        "correct": 7,
        "incorrect": 5,
        "unknown": 0,
    }  # newest labels only: step 0 counted once, as correct
    assert balance["step: human"]["unknown"] == 1
    assert balance["step: z3_arith"]["refute_only"] and not balance["step: mc"]["refute_only"]
    consensus = balance["consensus: steps"]
    assert (consensus["correct"], consensus["incorrect"], consensus["unknown"], consensus["agreed"]) == (2, 1, 1, 3)
    assert balance["consensus: outcomes"]["correct"] == 0


def test_stage_costs_of_a_run_inside_a_pipeline(db):
    def run(run_id, flow, start, end):
        return RunRecord(
            run_id=run_id,
            flow=flow,
            config="{}",
            status="completed" if end else "running",
            started_at=T0 + timedelta(seconds=start),
            finished_at=T0 + timedelta(seconds=end) if end else None,
        )

    with Store(db) as store:
        store.write(
            "runs",
            [
                run("old", "annotate", -100, -50),
                run("pipe", "pipeline", 0, None),
                run("gen", "generate", 1, 5),
                run("ann", "annotate", 5, 12.5),
                run("cur", "curate", 12.5, None),
            ],
        )
        inside = stage_costs(store, "cur", "pipe", now=T0 + timedelta(seconds=20))
        alone = stage_costs(store, "ann", None)
    assert [(s["stage"], s["seconds"]) for s in inside] == [("generate", 4), ("annotate", 7.5), ("curate", 7.5)]
    assert [(s["stage"], s["seconds"]) for s in alone] == [("annotate", 7.5)]


@pytest.mark.slow  # renders a chart (~2 s)
def test_the_chart_is_a_readable_png(labelled, tmp_path):
    with Store(labelled) as store:
        store.write(
            "annotator_costs",
            [AnnotatorCost(rollout_id="r1", annotator="mc", config_hash="c2", completions=48, run_id="test")],
        )
        store.write("runs", [RunRecord(run_id="run-1", flow="curate", config="{}", status="running")])
        report = compute_report(store, "run-1")
    assert report["completions"] == [{"annotator": "mc", "completions": 48, "rollouts": 1}]
    path = draw_report(report, tmp_path / "reports" / "run-1.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= 1000 and image.size[1] >= 700
        assert len(image.getcolors(maxcolors=1 << 20) or []) > 16  # drawn, not blank


def human_labels_on_first_steps(db):
    """A reviewer's verdicts on every rollout's first step, "Step 1: a + b = c" (the review app writes these)."""
    with Store(db) as store:
        steps = store.rows("SELECT rollout_id, text FROM steps WHERE step_index = 0 ORDER BY rollout_id")
        verdicts = []
        for step in steps:
            a, b, c = map(int, re.findall(r"\d+", step["text"].split(":", 1)[1]))
            verdicts.append("correct" if a + b == c else "incorrect")
        store.write(
            "step_labels",
            [
                StepLabel(
                    rollout_id=s["rollout_id"],
                    step_index=0,
                    annotator="human",
                    annotator_version="1",
                    config_hash="alice",
                    verdict=v,
                    run_id="review",
                )
                for s, v in zip(steps, verdicts)
            ],
        )
    return verdicts


def test_a_curate_run_writes_the_chart_and_artifacts(prefect_harness, tmp_path, db, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from rmforge.flows.annotate import annotate
    from rmforge.flows.curate import curate
    from rmforge.flows.import_rollouts import import_rollouts
    from tests.flows.test_flows import write_rollouts

    monkeypatch.setenv("RMFORGE_REPORT_DIR", str(tmp_path / "charts"))
    write_rollouts(tmp_path / "rollouts.jsonl")
    import_rollouts(str(tmp_path / "rollouts.jsonl"), db)
    annotate(db, ["answer", "z3_arith"])
    verdicts = human_labels_on_first_steps(db)
    assert verdicts.count("incorrect") == 4

    summary = curate(db, ["answer", "z3_arith"])

    report = summary["report"]
    chart = tmp_path / "charts" / f"{report['run_id']}.png"
    assert report["chart"] == str(chart) and chart.stat().st_size > 10_000
    with Image.open(chart) as image:
        image.verify()
    # z3_arith refutes exactly the four wrong first steps; its `correct` on the right ones agrees with human
    pair = next(p for p in report["agreement"] if (p["a"], p["b"]) == ("human", "z3_arith"))
    assert (pair["both_correct"], pair["both_incorrect"], pair["steps"]) == (8, 4, 12)
    assert pair["kappa"] == pytest.approx(1.0)
    assert [s["stage"] for s in report["stages"]] == ["curate"]
    with Store(db) as store:
        stored = store.rows("SELECT summary FROM runs WHERE run_id = ?", [report["run_id"]])
    assert '"kappa"' in stored[0]["summary"] and str(chart) in stored[0]["summary"]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["rmforge-run-report", "rmforge-run-report-agreement"])
            )
        )
    assert {a.key for a in artifacts} == {"rmforge-run-report", "rmforge-run-report-agreement"}
    assert any(str(chart) in str(a.data) for a in artifacts if a.key == "rmforge-run-report")


def test_a_pipeline_run_reports_every_stage_and_the_completions(prefect_harness, db):
    from rmforge.flows.pipeline import pipeline
    from rmforge.problems.arithmetic import generate_arithmetic_problems
    from rmforge.schemas.config import PipelineConfig, ProblemSourceConfig
    from tests.servers import ChatServer

    source = ProblemSourceConfig(count=2)
    golds = {p.question: p.gold_answer for p in generate_arithmetic_problems(2, 0, source.min_steps, source.max_steps)}

    def solves_the_first_sample(body, index):
        # A completer that can reach the gold: MC then has evidence both ways (never reaching it
        # would leave every MC verdict unknown, and nothing to agree or disagree with).
        question = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        return (
            f"The answer is \\boxed{{{golds[question]}}}"
            if index == 0
            else "Step 1: 2 + 2 = 4\nThe answer is \\boxed{4}"
        )

    server = ChatServer(solves_the_first_sample)
    try:
        config = PipelineConfig.model_validate(
            {
                "generator": {"backend": "openai", "model": "served", "base_url": server.url, "max_retries": 0},
                "problems": source.model_dump(),
                "sampling": {"n": 2, "max_tokens": 32},
                "annotators": ["answer", "mc", "z3_arith"],
                "annotator_options": {"mc": {"k": 2}},
                "curation": {"near_dedupe": False},
            }
        )
        summary = pipeline(config, db)
    finally:
        server.close()
    report = summary["curate"]["report"]
    with Store(db) as store:
        assert report["parent_run_id"] == store.rows("SELECT run_id FROM runs WHERE flow = 'pipeline'")[0]["run_id"]
    assert [s["stage"] for s in report["stages"]] == ["generate", "annotate", "curate"]
    assert all(s["seconds"] > 0 for s in report["stages"])
    with Store(db) as store:
        spent = dict(store.execute("SELECT annotator, sum(completions) FROM annotator_costs GROUP BY annotator"))
    assert spent["mc"] > 0 and spent["answer"] == spent["z3_arith"] == 0
    assert {c["annotator"]: c["completions"] for c in report["completions"]} == spent
    assert [(p["a"], p["b"]) for p in report["agreement"]] == [("mc", "z3_arith")]
    assert Image.open(report["chart"]).format == "PNG"


@pytest.mark.parametrize(
    "store, reports",
    [
        ("{tmp}/data/rmforge.duckdb", "{tmp}/data/reports"),
        ("ducklake:{tmp}/lakes/catalog.ducklake;data={tmp}/lakes/data/", "{tmp}/lakes/reports"),
        ("ducklake:{tmp}/lakes/catalog.ducklake", "{tmp}/lakes/reports"),
        # A catalog in PostgreSQL: beside the lake's data folder, never inside it (DuckLake owns its files).
        ("ducklake:postgres:dbname=lake host=/run/pg user=rm;data={tmp}/shared/lake/", "{tmp}/shared/reports"),
        # Nothing local to go beside: the current folder.
        ("ducklake:postgres:dbname=lake host=db.example;data=s3://bucket/lake/", "{cwd}/reports"),
    ],
)
def test_the_chart_folder_is_beside_the_store(tmp_path, monkeypatch, store, reports):
    monkeypatch.delenv("RMFORGE_REPORT_DIR", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    assert report_dir(store.format(tmp=tmp_path)) == Path(reports.format(tmp=tmp_path, cwd=cwd))
