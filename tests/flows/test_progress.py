"""Live progress from inside flows: generation and LLM annotators report per finished
request (through Prefect tasks), not only per batch."""

import json

import pytest
from typer.testing import CliRunner

from rmforge.cli import app
from rmforge.flows.pipeline import pipeline
from rmforge.flows.progress import set_progress_display
from rmforge.schemas.config import PipelineConfig
from rmforge.store import Store
from tests.servers import ChatServer
from tests.tasks.test_runs import RecordingDisplay

pytestmark = pytest.mark.slow  # Prefect flows and the CLI


def respond(body, index):
    return "Step 1: 2 + 2 = 4\nThe answer is \\boxed{4}"


def test_pipeline_reports_generation_and_annotation_progress(prefect_harness, db):
    server = ChatServer(respond)
    display = RecordingDisplay()
    set_progress_display(display)
    try:
        config = PipelineConfig.model_validate(
            {
                "generator": {"backend": "openai", "model": "served", "base_url": server.url, "max_retries": 0},
                "problems": {"count": 3},
                "sampling": {"n": 2, "max_tokens": 32},
                "annotators": ["answer", "mc"],
                "annotator_options": {"mc": {"k": 2}},
                "curation": {"near_dedupe": False},
                "batch_size": 2,  # one problem per generation batch
            }
        )
        summary = pipeline(config, db)
    finally:
        set_progress_display(None)
        server.close()
    generation = display.bar("generating rollouts")
    assert (generation["total"], generation["finished"]) == (6, True)
    done = [d for d, _ in generation["updates"]]
    assert done == sorted(done) and done[-1] == 6
    # per request (2 completions, 10 tokens each from the server), then per batch
    assert generation["updates"][:2] == [(2, {"completions": 2, "tokens": 20}), (2, {"completions": 2, "tokens": 20})]
    mc = display.bar("annotating with mc")
    assert mc["total"] == summary["annotate"]["mc"]["rollouts"] == 6
    # completions arrive while the single-batch run is still at 0 rollouts done
    assert any(d == 0 and counters.get("completions", 0) > 0 for d, counters in mc["updates"])
    assert mc["updates"][-1][0] == 6

    result = CliRunner().invoke(app, ["status", "--db", db])
    assert result.exit_code == 0 and "completed" in result.stdout
    with Store(db, read_only=True) as store:
        statuses = {r["flow"]: r["status"] for r in store.rows("SELECT flow, status FROM runs")}
    assert statuses == dict.fromkeys(["pipeline", "generate", "annotate", "curate"], "completed")


def test_cli_json_output_is_only_json(prefect_harness, tmp_path, db):
    rows = [{"problem_id": "p", "question": "2 + 2?", "gold_answer": "4", "response": respond(None, 0)}]
    (tmp_path / "r.jsonl").write_text(json.dumps(rows[0]))
    result = CliRunner().invoke(app, ["import", "rollouts", str(tmp_path / "r.jsonl"), "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rollouts"] == 1
