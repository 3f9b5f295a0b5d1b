"""Several OpenAI-compatible servers of one model at once: the generate flow spreads its
requests over them and stores what one server alone would give."""

import pytest

from rmforge.flows.generate import generate
from rmforge.schemas.config import PipelineConfig
from rmforge.store import Store
from tests.servers import ChatServer

pytestmark = pytest.mark.slow  # Prefect flows against loopback model servers

VOLATILE = {"run_id", "created_at"}


def respond(body, index):
    """A pure function of the request, as a served model with a fixed seed would be."""
    question = body["messages"][-1]["content"]
    return (
        f"Step 1: I read {len(question)} characters.\nSample {index} of seed {body['seed']}: \\boxed{{{len(question)}}}"
    )


def generated(db, base_urls):
    config = PipelineConfig.model_validate(
        {
            "generator": {"backend": "openai", "model": "served", "base_urls": base_urls, "max_retries": 0},
            "problems": {"count": 6},
            "sampling": {"n": 2, "max_tokens": 32, "seed": 3},
            "batch_size": 6,  # 3 problems per batch: each batch's requests are spread over the servers
        }
    )
    assert generate(config, db)["new_rollouts"] == 12
    with Store(db, read_only=True) as store:
        tables = {
            table: [
                {k: v for k, v in row.items() if k not in VOLATILE}
                for row in store.rows(f"SELECT * FROM {table} ORDER BY ALL")
            ]
            for table in ("rollouts", "steps")
        }
    return tables


def test_two_servers_share_the_work_and_give_the_one_server_result(prefect_harness, tmp_path):
    first, second, alone = ChatServer(respond), ChatServer(respond), ChatServer(respond)
    try:
        spread = generated(str(tmp_path / "two.duckdb"), [first.url, second.url])
        single = generated(str(tmp_path / "one.duckdb"), [alone.url])
    finally:
        for server in (first, second, alone):
            server.close()
    assert len(first.payloads) == len(second.payloads) == 3  # 6 prompts (n=2 each), taking turns across batches
    assert len(alone.payloads) == 6
    asked = {p["messages"][-1]["content"] for p in first.payloads + second.payloads}
    assert len(asked) == 6  # every problem asked once, none twice
    assert spread == single and len(spread["rollouts"]) == 12
