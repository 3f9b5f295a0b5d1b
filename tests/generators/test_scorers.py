"""Process reward model backends: the chat they send, the replies they accept, the scores of a tiny
random PRM through vLLM's pooling runner (equal to a plain torch forward), and the same model's
scores carried over HTTP from a loopback server that runs it in torch."""

import importlib.util

import pytest

from rmforge.generators import close_generators, load_scorer
from rmforge.generators.base import BackendUnavailable, GenerationError
from rmforge.generators.http_scorer import HTTPScorer, server_root
from rmforge.generators.scorers import StepScoreRequest, without
from rmforge.schemas.config import ScorerConfig
from tests.servers import PoolingServer
from tests.tiny_prm import SEPARATOR, ReferencePRM

REQUEST = StepScoreRequest(question="What is 3 + 4 - 2?", steps=["3 + 4 = 7.", "7 - 2 = 5.", "The answer is 5."])


def http_scorer(url, **options):
    return HTTPScorer(ScorerConfig(backend="openai", model="prm", base_url=url, max_retries=0, **options))


def one_row_per_step(body):
    steps = body["messages"][-1]["content"].split(SEPARATOR)[:-1]
    return [[1 - 0.1 * (i + 1), 0.1 * (i + 1)] for i in range(len(steps))]


@pytest.fixture()
def server():
    s = PoolingServer(one_row_per_step)
    yield s
    s.close()


def test_the_chat_follows_qwen_prm_each_step_ended_by_the_separator():
    scorer = http_scorer("http://unused")
    system, user, assistant = scorer.messages(REQUEST)
    assert system == {
        "role": "system",
        "content": "Please reason step by step, and put your final answer within \\boxed{}.",
    }
    assert user == {"role": "user", "content": REQUEST.question}
    assert assistant == {
        "role": "assistant",
        "content": "3 + 4 = 7.<extra_0>7 - 2 = 5.<extra_0>The answer is 5.<extra_0>",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a<extra_0>b", "ab"), ("<extra_<extra_0>0>", ""), ("no separator", "no separator"), ("<extra_1>", "<extra_1>")],
)
def test_a_separator_written_by_the_policy_never_reaches_the_model(text, expected):
    assert without(text, SEPARATOR) == expected
    scorer = http_scorer("http://unused")
    messages = scorer.messages(StepScoreRequest(question=text, steps=[text, "next"]))
    assert messages[1]["content"] == expected
    assert messages[2]["content"].count(SEPARATOR) == 2  # one scored position per step, no more


def test_http_scores_are_the_positive_class_of_each_step(server):
    scorer = http_scorer(server.url + "/v1/")  # a generator's URL: /pooling sits beside /v1
    assert scorer.score_steps([REQUEST]) == [pytest.approx([0.1, 0.2, 0.3])]
    assert server.paths == ["/pooling"]
    body = server.payloads[0]
    assert body["task"] == "token_classify" and body["use_activation"] is True and body["model"] == "prm"
    assert body["add_generation_prompt"] is False and body["messages"] == scorer.messages(REQUEST)
    assert http_scorer(server.url, positive_class=0).score_steps([REQUEST]) == [pytest.approx([0.9, 0.8, 0.7])]


def test_server_root_strips_only_a_trailing_v1():
    assert server_root("http://h:8000/v1/") == "http://h:8000"
    assert server_root("http://h:8000/prm") == "http://h:8000/prm"


def test_a_solution_beyond_the_servers_context_gets_no_scores():
    overflow = PoolingServer(lambda body: (400, '{"error": {"message": "maximum context length is 4096 tokens"}}'))
    try:
        assert http_scorer(overflow.url).score_steps([REQUEST]) == [None]
    finally:
        overflow.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ([[0.5, 0.5]], "1 step scores for 3 steps"),  # the server reads another step tag
        ([[0.5, 1.5]] * 3, "no probability"),  # logits, not probabilities
        ([[0.5]] * 3, r"class 1 of \[0.5\] is no probability"),
        ({"data": []}, "expected one `data` item"),
        ({"detail": "oops"}, "expected one `data` item"),
        ("not rows", "one list of class probabilities per step"),
        ((400, '{"error": "bad task"}'), "HTTP 400"),
    ],
)
def test_a_reply_that_is_not_one_probability_per_step_fails_the_request(reply, message):
    bad = PoolingServer(lambda body: reply)
    try:
        with pytest.raises(GenerationError, match=message):
            http_scorer(bad.url).score_steps([REQUEST])
    finally:
        bad.close()


def test_load_scorer_refuses_a_config_without_a_model_or_server():
    with pytest.raises(BackendUnavailable, match="scorer needs a model"):
        load_scorer(ScorerConfig())
    with pytest.raises(BackendUnavailable, match=r"needs annotator_options\.prm\.scorer\.base_url"):
        load_scorer(ScorerConfig(backend="openai", model="prm"))


def reference_server(folder):
    reference = ReferencePRM(folder)

    def score(body):
        if len(reference.token_ids(body["messages"])) > reference.max_len:
            return 400, '{"error": {"message": "This model\'s maximum context length is 512 tokens"}}'
        return reference.step_probabilities(body["messages"])

    return reference, PoolingServer(score)


@pytest.mark.slow  # torch forward passes behind a loopback server
def test_http_scorer_carries_the_tiny_models_step_probabilities_back_unchanged(tiny_prm):
    reference, server = reference_server(tiny_prm)
    try:
        scorer = http_scorer(server.url)
        too_long = StepScoreRequest(question="q " * 600, steps=["one"])
        scores, beyond = scorer.score_steps([REQUEST, too_long])
        expected = [row[1] for row in reference.step_probabilities(scorer.messages(REQUEST))]
        assert scores == pytest.approx(expected) and len(scores) == 3 and beyond is None
    finally:
        server.close()


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (cpu/gpu extra)")
def test_vllm_pooling_runner_scores_equal_a_plain_torch_forward(tiny_prm):
    config = ScorerConfig(model=str(tiny_prm), dtype="float32", max_model_len=512, cpu_kv_cache_gib=1)
    scorer = load_scorer(config)
    try:
        assert load_scorer(config) is scorer  # one engine per configuration
        reference = ReferencePRM(tiny_prm)
        other = StepScoreRequest(question="Sam has 12 apples.", steps=["12 - 5 = 7<extra_0> apples"])
        too_long = StepScoreRequest(question="q " * 600, steps=["one"])
        scores, other_scores, beyond = scorer.score_steps([REQUEST, other, too_long])
        for request, got in ((REQUEST, scores), (other, other_scores)):
            expected = [row[1] for row in reference.step_probabilities(scorer.messages(request))]
            assert got == pytest.approx(expected, abs=1e-4) and len(got) == len(request.steps)
        assert beyond is None
        # a separator the tokenizer splits into several tokens cannot mark steps
        with pytest.raises(BackendUnavailable, match="not one"):
            load_scorer(config.model_copy(update={"step_separator": "STEP-END"}))
    finally:
        close_generators()
