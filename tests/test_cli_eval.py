"""`rmforge eval` end to end on real human-labelled solutions (a ProcessBench sample)."""

import json

import pytest
from typer.testing import CliRunner

from rmforge.cli import app
from rmforge.verifiers.answers import grade_response
from tests.tasks.test_labelled_import import PROCESSBENCH, needs_processbench

pytestmark = pytest.mark.slow  # Prefect flows through the CLI


@needs_processbench
def test_eval_prints_scores_and_writes_the_report(prefect_harness, tmp_path):
    records = json.loads(PROCESSBENCH.read_text())[:40]
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(records))
    gold = json.loads(PROCESSBENCH.with_name("gsm8k_gold_answers.json").read_text())
    (tmp_path / "sample_gold_answers.json").write_text(json.dumps({r["id"]: gold[r["id"]] for r in records}))
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(sample),
            "--annotators",
            "answer,z3_arith",
            "--out",
            str(out),
            "--policies",
            "ranked,unanimous",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["scores"]
    assert [s["name"] for s in scores] == [
        "answer",
        "z3_arith",
        "ranked(answer,z3_arith)",
        "unanimous(answer,z3_arith)",
    ]
    erroneous = sum(r["label"] >= 0 for r in records)
    assert all(s["solutions"] == 40 and s["erroneous"] == erroneous for s in scores)
    z3 = scores[1]
    assert z3["correct_labels"] == 0  # refute-only: it never claims a step is right
    assert z3["incorrect_precision"] in (None, 1.0)
    assert (out / "report.md").read_text().count("Qwen2.5-Math-PRM-7B") == 1
    assert "`correct` precision, direct" in (out / "report.md").read_text()
    assert (out / "report.png").stat().st_size > 10_000
    assert json.loads((out / "metrics.json").read_text()) == scores
    # Final answers: the outcome verdicts of `answer` against the humans' final_answer_correct.
    answer = scores[0]
    verdicts = [
        (
            grade_response("\n\n".join(r["steps"]), gold[r["id"]], question=r["problem"]).verdict,
            "correct" if r["final_answer_correct"] else "incorrect",
        )
        for r in records
    ]
    decided = [(ours, theirs) for ours, theirs in verdicts if ours != "unknown"]
    assert answer["outcomes_decided"] == len(decided) and answer["outcome_coverage"] == round(len(decided) / 40, 4)
    assert answer["outcome_agreement"] == round(sum(ours == theirs for ours, theirs in decided) / len(decided), 4)
    assert z3["outcomes_decided"] is None  # it labels no outcomes
    assert "## Final answers" in (out / "report.md").read_text()
    # F1 in percent, as the published references beside it (82.4), not as a fraction.
    row = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| answer |"))
    assert row.split(" | ")[1] == f"{100 * answer['f1']:.1f}"


def test_eval_rejects_an_unknown_policy_before_any_work(tmp_path):
    sample = tmp_path / "s.json"
    sample.write_text("[]")
    result = CliRunner().invoke(app, ["eval", str(sample), "--annotators", "answer", "--policies", "ranked,bogus"])
    assert result.exit_code == 1 and "--policies: unknown 'bogus'" in result.stderr
    assert "Traceback" not in result.output


def test_outcome_scores_count_only_decided_verdicts():
    from rmforge.tasks.evaluate import Scores, score_outcomes

    human = {"a": "correct", "b": "incorrect", "c": "incorrect", "d": "correct"}
    scores = Scores(name="x", kind="annotator")
    score_outcomes(scores, {"a": "correct", "b": "incorrect", "c": "unknown", "d": "incorrect"}, human)
    assert (scores.outcomes_decided, scores.outcome_agreement, scores.outcome_coverage) == (3, round(2 / 3, 4), 0.75)
    assert scores.outcome_incorrect_precision == 0.5  # b right, d wrong; c's unknown is no claim
    silent = Scores(name="z3", kind="annotator")
    score_outcomes(silent, {}, human)
    assert silent.outcomes_decided is None


@needs_processbench
def test_eval_scores_a_process_reward_model_served_over_http(prefect_harness, tiny_prm, tmp_path):
    from tests.generators.test_scorers import reference_server

    records = json.loads(PROCESSBENCH.read_text())[:6]
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(records))
    gold = json.loads(PROCESSBENCH.with_name("gsm8k_gold_answers.json").read_text())
    (tmp_path / "sample_gold_answers.json").write_text(json.dumps({r["id"]: gold[r["id"]] for r in records}))
    _, server = reference_server(tiny_prm)
    scorer = {"backend": "openai", "model": "tiny-prm", "base_url": server.url, "max_retries": 0}
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"annotator_options": {"prm": {"scorer": scorer}}}))
    try:
        result = CliRunner().invoke(
            app,
            ["eval", str(sample), "--annotators", "answer,prm", "--config", str(config), "--out", str(tmp_path / "r")]
            + ["--policies", "ranked", "--json"],
        )
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    scores = {s["name"]: s for s in json.loads(result.stdout)["scores"]}
    assert set(scores) == {"answer", "prm", "ranked(answer,prm)"}
    # every solution was sent to the reward model, one request each; its random scores say nothing
    assert scores["prm"]["solutions"] == 6 and len(server.payloads) == 6
