"""LLM-backed annotators (mc, mc_binary, pav, judge) inside the flows, against a real
OpenAI-compatible server on loopback (the LLM boundary) instead of a local engine."""

import json
import re

import pytest
from typer.testing import CliRunner

from rmforge.cli import app
from rmforge.flows.annotate import annotate
from rmforge.flows.curate import curate
from rmforge.flows.import_rollouts import import_rollouts
from rmforge.generators.base import GenerationError
from rmforge.schemas.config import GeneratorConfig
from rmforge.store import Store
from tests.servers import ChatServer

pytestmark = pytest.mark.slow  # Prefect flows against a loopback model server

QUESTION = "Ava has 10 cards and gets 5 more, then gives away 3. How many cards?"
RIGHT = "Step 1: 10 + 5 = 15\nStep 2: 15 - 3 = 12\nStep 3: She has 12 cards.\nThe answer is \\boxed{12}"
WRONG = "Step 1: 10 + 5 = 15\nStep 2: 15 - 3 = 11\nStep 3: She has 11 cards.\nThe answer is \\boxed{11}"


def respond(body, index):
    system = body["messages"][0]["content"]
    if "judge" in system.lower() or "paragraph" in system.lower():
        solution = body["messages"][-1]["content"]
        return "Step 1 is fine. Step 2 subtracts wrongly.\nVERDICT: 1" if "= 11" in solution else "VERDICT: -1"
    prefix = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "assistant" else ""
    # A continuation reaches 12 unless the prefix already holds the slip.
    return "The answer is \\boxed{11}" if "= 11" in prefix else "The answer is \\boxed{12}"


@pytest.fixture()
def server():
    s = ChatServer(respond)
    yield s
    s.close()


def test_llm_annotators_in_the_annotate_flow(prefect_harness, server, tmp_path, db):
    rows = [
        {"problem_id": "ava", "question": QUESTION, "gold_answer": "12", "response": r, "model": m}
        for r, m in ((RIGHT, "a"), (WRONG, "b"))
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    import_rollouts(str(tmp_path / "r.jsonl"), db)

    generator = {"backend": "openai", "model": "served", "base_url": server.url, "max_retries": 0}
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "generator": generator,
                "annotator_options": {"mc": {"k": 2}, "mc_binary": {"k": 2}, "pav": {"k": 2}, "judge": {"votes": 3}},
            }
        )
    )
    result = CliRunner().invoke(
        app, ["annotate", "--annotator", "answer,mc,mc_binary,pav,judge", "--config", str(config), "--db", db]
    )
    assert result.exit_code == 0, result.output
    curate(db, ["z3_arith", "mc", "mc_binary", "judge"])

    with Store(db) as store:

        def first_error(annotator):
            rows = store.rows(
                "SELECT r.model, min(l.step_index) FILTER (l.verdict = 'incorrect') AS first_error "
                "FROM step_labels l JOIN rollouts r USING (rollout_id) WHERE annotator = ? GROUP BY 1 ORDER BY 1",
                [annotator],
            )
            return {r["model"]: r["first_error"] for r in rows}

        for annotator in ("mc", "mc_binary", "pav", "judge"):
            assert first_error(annotator) == {"a": None, "b": 1}, annotator
        assert all(r["model"] == "served" for r in store.rows("SELECT DISTINCT model FROM step_labels"))
        costs = {
            r["annotator"]: r["n"]
            for r in store.rows("SELECT annotator, sum(completions) AS n FROM annotator_costs GROUP BY 1")
        }
        assert costs["mc_binary"] < costs["mc"]
        assert store.count("critiques") == 6
        assert (
            store.rows("SELECT count(*) AS n FROM process_examples WHERE list_contains(annotators, 'judge')")[0]["n"]
            == 2
        )
    # continuations were sent as assistant prefixes, on the configured server
    assert any(p.get("continue_final_message") for p in server.payloads)


def test_a_crash_mid_run_resumes_without_duplicates_or_losses(prefect_harness, tmp_path, db):
    """The LLM dies on the third batch; the rerun labels only what is missing."""
    rows = [
        {
            "problem_id": f"ava-{i}",
            "question": QUESTION + f" (#{i})",
            "gold_answer": "12",
            "response": RIGHT if i % 2 else WRONG,
            "model": "m",
        }
        for i in range(5)
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    import_rollouts(str(tmp_path / "r.jsonl"), db)

    calls = {"n": 0}

    def dying(body, index):
        calls["n"] += 1
        if calls["n"] > 3:  # one judge vote per rollout: the server breaks in the second batch
            raise RuntimeError("server crashed")
        return respond(body, index)

    options = {"judge": {"votes": 1}}
    for attempt, handler in enumerate((dying, respond)):
        server = ChatServer(handler)
        generator = GeneratorConfig(
            backend="openai", model="served", base_url=server.url, max_retries=0, request_timeout_s=5
        )
        try:
            if attempt == 0:
                with pytest.raises(GenerationError):
                    annotate(db, ["judge"], options, generator, batch_size=2)
            else:
                summary = annotate(db, ["judge"], options, generator, batch_size=2)
        finally:
            server.close()
        with Store(db) as store:
            labelled = store.rows("SELECT count(DISTINCT rollout_id) AS n FROM annotator_costs")[0]["n"]
        if attempt == 0:
            assert labelled == 2  # the first batch landed whole, nothing of the failed second one
            with Store(db) as store:
                assert store.rows("SELECT status FROM runs WHERE flow = 'annotate'") == [{"status": "failed"}]
    assert summary["judge"]["rollouts"] == 3  # only what the crash left undone
    with Store(db) as store:
        assert store.count("critiques") == 5
        assert store.rows("SELECT count(*) AS n FROM outcome_labels")[0]["n"] == 5
        step_rows = store.rows(
            "SELECT rollout_id, step_index, count(*) AS n FROM step_labels GROUP BY 1, 2 HAVING n > 1"
        )
        assert step_rows == []


def test_a_pipeline_run_with_prm_and_code_check_flows_into_consensus_and_exports(
    prefect_harness, tiny_prm, tmp_path, db
):
    """`rmforge run --annotators answer,z3_arith,prm,code_check`: rollouts and the code_check programs
    come from a loopback chat server, the tiny PRM's step scores from a loopback pooling server; the
    programs run in the sandbox, and both annotators' verdicts reach consensus, process examples, the
    export card and review."""
    from tests.generators.test_scorers import reference_server

    def policy_and_checker(body, index):
        user = body["messages"][-1]["content"]
        if "[Step to check]" in user:
            step = user.split("[Step to check]\n\n", 1)[1]
            a, b, claimed = re.search(r"(\d+) \+ (\d+) = (\d+)", step).groups()
            return f"```python\nprint('VERDICT: correct' if {a} + {b} == {claimed} else 'VERDICT: incorrect')\n```"
        slip = "4 + 1 = 6" if index % 2 else "4 + 1 = 5"
        return f"Step 1: 2 + 2 = 4\nStep 2: {slip}\nThe answer is \\boxed{{{slip[-1]}}}"

    server = ChatServer(policy_and_checker)
    _, pooling = reference_server(tiny_prm)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "generator": {"backend": "openai", "model": "served", "base_url": server.url, "max_retries": 0},
                "problems": {"count": 2},
                "sampling": {"n": 2},
                # The tiny random PRM scores near 0.37: here that is `correct` (at most `unknown`), so
                # it agrees with code_check wherever both confirm and never contradicts it.
                "annotator_options": {
                    "prm": {
                        "scorer": {"backend": "openai", "model": "tiny-prm", "base_url": pooling.url},
                        "correct_threshold": 0.3,
                        "incorrect_threshold": 0.0,
                    }
                },
            }
        )
    )
    out = tmp_path / "out"
    try:
        result = CliRunner().invoke(
            app,
            [
                "run", "--config", str(config), "--db", db, "--export", str(out),
                "--annotators", "answer,z3_arith,prm,code_check",
            ],
        )  # fmt: skip
    finally:
        server.close()
        pooling.close()
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        verdicts = {
            (r["step_index"], r["verdict"]): r["n"]
            for r in store.rows(
                "SELECT step_index, verdict, count(*) AS n FROM step_labels WHERE annotator = 'code_check' GROUP BY 1, 2"
            )
        }
        assert verdicts == {(0, "correct"): 4, (1, "correct"): 2, (1, "incorrect"): 2}
        supporters = store.rows("SELECT list(DISTINCT s) AS s FROM step_consensus, UNNEST(supporters) AS t(s)")
        assert "code_check" in supporters[0]["s"]
        with_code_check = store.rows(
            "SELECT count(*) AS n FROM process_examples WHERE list_contains(annotators, 'code_check')"
        )[0]["n"]
        assert with_code_check > 0
        assert store.count("critiques") == 4 and store.rows("SELECT DISTINCT annotator FROM critiques") == [
            {"annotator": "code_check"}
        ]
        prm = store.rows("SELECT count(*) AS n FROM step_labels WHERE annotator = 'prm'")[0]["n"]
        assert prm == store.count("steps") == 8
        voters = store.rows("SELECT list(DISTINCT a) AS a FROM step_consensus, UNNEST(annotators) AS t(a)")[0]["a"]
        assert {"prm", "code_check", "z3_arith"} <= set(voters)
        both = store.rows(
            "SELECT count(*) AS n FROM process_examples "
            "WHERE list_contains(annotators, 'prm') AND list_contains(annotators, 'code_check')"
        )[0]["n"]
        assert both > 0
    card = (out / "README.md").read_text()
    assert "| `code_check` | yes | yes | no | model | indicator |" in card
    assert "| `prm` | yes | yes | no | model | probability |" in card

    # `rmforge review` shows each step's program and output, and the rollout's critique
    from fastapi.testclient import TestClient

    from rmforge.review.app import create_app

    with Store(db) as store:
        slipped = store.rows(
            "SELECT rollout_id FROM step_labels WHERE annotator = 'code_check' AND verdict = 'incorrect' LIMIT 1"
        )[0]["rollout_id"]
    client = TestClient(create_app(db, "alice"), base_url="http://127.0.0.1:8765")
    page = client.get("/rollout", params={"id": slipped}).text
    assert "print(&#39;VERDICT: correct&#39; if 4 + 1 == 6 else &#39;VERDICT: incorrect&#39;)" in page
    assert "--- output ---" in page and "<h2>Critiques</h2>" in page and "## Step 1: incorrect" in page


def test_eval_scores_code_check_pointed_at_a_served_model(prefect_harness, tmp_path):
    """`rmforge eval --annotators answer,code_check --config ...` with the model behind a server."""
    import rmforge

    def checker(body, index):
        step = body["messages"][-1]["content"].split("[Step to check]\n\n", 1)[1]
        sums = re.search(r"(\d+) \+ (\d+) = (\d+)", step.split("\n\nWrite one Python program")[0])
        if sums is None:
            return "Nothing to compute in this step."
        a, b, claimed = sums.groups()
        return f"```python\nprint('VERDICT: correct' if {a} + {b} == {claimed} else 'VERDICT: incorrect')\n```"

    solutions = tmp_path / "labelled.json"
    solutions.write_text(
        json.dumps(
            [
                {"id": "right", "problem": "Sam has 2 pens and buys 3 more. How many pens?",
                 "steps": ["Sam has 2 + 3 = 5 pens.", "The answer is 5."], "label": -1, "final_answer_correct": True},
                {"id": "wrong", "problem": "Ann has 4 pens and buys 3 more. How many pens?",
                 "steps": ["Ann has 4 + 3 = 8 pens.", "The answer is 8."], "label": 0, "final_answer_correct": False},
            ]
        )
    )  # fmt: skip
    (tmp_path / "labelled_gold_answers.json").write_text(json.dumps({"right": "5", "wrong": "7"}))
    server = ChatServer(checker)
    generator = {"backend": "openai", "model": "served", "base_url": server.url, "max_retries": 0}
    try:
        scored = rmforge.eval(
            solutions,
            ["answer", "code_check"],
            policies=["ranked"],
            out=tmp_path / "report",
            config={"annotator_options": {"code_check": {"generator": generator}}},
        )
    finally:
        server.close()
    scores = {s["name"]: s for s in scored.scores}
    code_check = scores["code_check"]
    assert (code_check["incorrect_labels"], code_check["incorrect_precision"]) == (1, 1.0)
    assert (code_check["correct_labels"], code_check["correct_precision"]) == (1, 1.0)
    assert code_check["completions"] == 4  # one program per step
    assert "code_check" in (tmp_path / "report" / "report.md").read_text()
