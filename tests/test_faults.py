"""LLM server faults (errors, timeouts, hangs, garbage) against a real loopback server.

Each fault gives a clear GenerationError (the annotate run fails, writes nothing and leaves its
rollouts pending and unclaimed) or an `unknown` label with the reason, never a silent wrong label.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmforge.flows.annotate import annotate
from rmforge.generators.base import GenerationError
from rmforge.generators.openai_server import OpenAIServerGenerator
from rmforge.generators.prompts import solution_request
from rmforge.schemas.config import GeneratorConfig, SamplingConfig, StepSplitConfig
from rmforge.store import Store
from rmforge.tasks.annotate import make_annotator, pending_rollout_ids
from rmforge.tasks.rollouts import generate_rollouts, import_rollouts
from rmforge.tasks.steps import split_rollout_steps
from tests.builders import make_problem
from tests.servers import FAULTS, ChatServer

pytestmark = pytest.mark.slow  # faulty loopback LLM servers (retries, timeouts) and the annotate flow

REPO = Path(__file__).resolve().parent.parent
QUESTION = "Ava has 10 cards and gets 5 more, then gives away 3. How many cards?"
RIGHT = "Step 1: 10 + 5 = 15\nStep 2: 15 - 3 = 12\nThe answer is \\boxed{12}"
WRONG = "Step 1: 10 + 5 = 15\nStep 2: 15 - 3 = 11\nThe answer is \\boxed{11}"

# Messages a user sees for each fault (after the retries).
EXPECTED = {
    "hang": "ReadTimeout",
    "not_json": "reply is not JSON",
    "json_list": "no `choices` list",
    "no_choices": "no `choices` list",
    "choices_not_list": "no `choices` list",
    "null_message": "choice 0 has no message content",
    "null_content": "choice 0 has no message content",
    "wrong_n": "returned 1 choices, asked for 2",
    "cut_body": "RemoteProtocolError",
}


def respond(body, index):
    system = body["messages"][0]["content"].lower()
    if "judge" in system or "paragraph" in system:
        return "VERDICT: 1" if "= 11" in body["messages"][-1]["content"] else "VERDICT: -1"
    prefix = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "assistant" else ""
    return "The answer is \\boxed{11}" if "= 11" in prefix else "The answer is \\boxed{12}"


@pytest.fixture()
def server():
    s = ChatServer(respond, hang_s=3)
    yield s
    s.close()


def generator_config(server, **kw) -> GeneratorConfig:
    # A fresh model name per config: engines are cached process-wide by config.
    defaults = {"max_retries": 1, "request_timeout_s": 1}
    return GeneratorConfig(
        backend="openai", model=f"served-{time.monotonic_ns()}", base_url=server.url, **{**defaults, **kw}
    )


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_garbage_or_silence_is_a_clear_generation_error(server, fault) -> None:
    server.misbehave_next = [fault] * 2  # the first try and the retry
    generator = OpenAIServerGenerator(generator_config(server))
    start = time.monotonic()
    with pytest.raises(GenerationError, match=EXPECTED[fault]) as caught:
        generator.generate([solution_request("q")], SamplingConfig(n=2 if fault == "wrong_n" else 1))
    assert time.monotonic() - start < 15
    if fault in ("hang", "not_json", "cut_body"):  # transport-level: retried, then named with the server
        assert server.url in str(caught.value) and "2 tries" in str(caught.value)
    generator.close()


def test_every_fault_the_server_offers_is_covered() -> None:
    assert set(FAULTS) - {"bad_usage"} == set(EXPECTED)


def test_unusable_usage_field_is_ignored_not_fatal(server) -> None:
    server.misbehave_next = ["bad_usage"]
    out = OpenAIServerGenerator(generator_config(server)).generate([solution_request("q")], SamplingConfig(n=1))
    assert out[0][0].text == "The answer is \\boxed{12}" and out[0][0].num_tokens is None


def test_a_transient_500_then_success_is_retried(server) -> None:
    server.fail_next = [500]
    out = OpenAIServerGenerator(generator_config(server)).generate([solution_request("q")], SamplingConfig(n=1))
    assert out[0][0].text.endswith("{12}")


def test_a_400_is_not_retried_and_names_the_status(server) -> None:
    server.fail_next = [400]
    with pytest.raises(GenerationError, match="HTTP 400"):
        OpenAIServerGenerator(generator_config(server, max_retries=3)).generate(
            [solution_request("q")], SamplingConfig(n=1)
        )
    assert len(server.payloads) == 1


# ------------------------------------------------------------- through the annotate flow


@pytest.fixture()
def store_with_rollouts(tmp_path, db):
    rows = [
        {
            "problem_id": f"ava-{i}",
            "question": QUESTION + f" (#{i})",
            "gold_answer": "12",
            "response": RIGHT if i % 2 else WRONG,
            "model": "m",
        }
        for i in range(4)
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    import_rollouts.fn(db, str(tmp_path / "r.jsonl"), "import")
    split_rollout_steps.fn(db, StepSplitConfig())
    return db


def label_counts(db: str) -> dict[str, int]:
    with Store(db) as store:
        return {t: store.count(t) for t in ("step_labels", "outcome_labels", "critiques", "annotator_costs")}


@pytest.mark.parametrize(("annotator_name", "options"), [("judge", {"votes": 2}), ("mc", {"k": 2})])
@pytest.mark.parametrize("fault", ["not_json", "no_choices", "wrong_n", "null_content", "hang", 500])
def test_a_faulty_server_fails_the_annotate_run_and_writes_nothing(
    prefect_harness, server, store_with_rollouts, annotator_name, options, fault
) -> None:
    db = store_with_rollouts
    generator = generator_config(server, max_retries=0)
    annotator = make_annotator(annotator_name, options, generator)
    if fault == 500:
        server.fail_next = [500] * 50
    else:
        server.misbehave_next = [fault] * 50
    pending = pending_rollout_ids.fn(db, annotator)
    with pytest.raises(GenerationError):
        annotate(db, [annotator_name], {annotator_name: options}, generator)
    assert label_counts(db) == {"step_labels": 0, "outcome_labels": 0, "critiques": 0, "annotator_costs": 0}
    assert pending_rollout_ids.fn(db, annotator) == pending  # retried on the next run
    with Store(db) as store:
        assert store.count("batch_claims") == 0  # released for other runs
        assert store.rows("SELECT status FROM runs WHERE flow = 'annotate'") == [{"status": "failed"}]

    # The server recovers: the rerun labels everything, right.
    server.misbehave_next, server.fail_next = [], []
    assert annotate(db, [annotator_name], {annotator_name: options}, generator)[annotator_name]["rollouts"] == 4
    with Store(db) as store:
        first_errors = store.rows(
            "SELECT r.response LIKE '%= 11%' AS wrong, min(l.step_index) FILTER (l.verdict = 'incorrect') AS e "
            "FROM step_labels l JOIN rollouts r USING (rollout_id) WHERE annotator = ? GROUP BY 1 ORDER BY 1",
            [annotator_name],
        )
    assert first_errors == [{"wrong": False, "e": None}, {"wrong": True, "e": 1}]


def test_judge_replies_without_a_verdict_are_unknown_with_the_reason(prefect_harness, store_with_rollouts) -> None:
    db = store_with_rollouts
    server = ChatServer(lambda body, index: "I think it looks fine overall.")
    try:
        annotate(db, ["judge"], {"judge": {"votes": 2}}, generator_config(server))
    finally:
        server.close()
    with Store(db) as store:
        rows = store.rows("SELECT DISTINCT verdict, reason FROM step_labels WHERE annotator = 'judge'")
    assert rows == [{"verdict": "unknown", "reason": "no parsable verdict in 2 judge replies"}]


def test_generation_through_a_faulty_server_stores_no_rollouts(server, db) -> None:
    problems = [make_problem(QUESTION, "12")]
    server.misbehave_next = ["null_content"] * 10
    generator = generator_config(server, max_retries=0)
    with pytest.raises(GenerationError, match="no message content"):
        generate_rollouts.fn(db, problems, generator, SamplingConfig(n=1), "run")
    with Store(db) as store:
        assert store.count("rollouts") == 0
    server.misbehave_next = []
    assert generate_rollouts.fn(db, problems, generator, SamplingConfig(n=1), "run")["rollouts"] == 1


@pytest.mark.parametrize("verbose", [False, True])
def test_a_failing_flow_is_one_line_unless_verbose(tmp_path, store_with_rollouts, verbose) -> None:
    """Prefect logs the failed task and flow runs with tracebacks; without --verbose the user
    sees only rmforge's line naming the cause."""
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    config = tmp_path / "closed.yaml"
    config.write_text(f"generator:\n  backend: openai\n  model: served\n  base_url: {closed_url}\n  max_retries: 0\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RMFORGE_STATE_DIR": str(tmp_path / "state")}
    env.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rmforge.cli",
            *(["--verbose"] if verbose else []),
            "annotate",
            "--annotator",
            "mc",
            "--config",
            str(config),
            "--db",
            store_with_rollouts,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: GenerationError: ") and closed_url in errors[0], lines
    if verbose:
        assert "Traceback" in result.stderr  # Prefect's run logs stay for whoever asks for them
    else:
        assert lines == errors
