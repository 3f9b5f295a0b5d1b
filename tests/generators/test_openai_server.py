"""The OpenAI-compatible backend against a real local HTTP server started by the test."""

import threading

import pytest

from rmforge.generators.base import GenerationError, PipelinedRequest
from rmforge.generators.openai_server import OpenAIServerGenerator
from rmforge.generators.prompts import solution_request
from rmforge.schemas.config import GeneratorConfig, SamplingConfig
from tests.servers import ChatServer


def echo(body, index):
    text = f"reply {index} to {body['messages'][-1]['content'][:12]}"
    return text, "stop" if index == 0 else "length"


@pytest.fixture()
def server():
    s = ChatServer(echo)
    yield s
    s.close()


def make(server, **kw):
    return OpenAIServerGenerator(GeneratorConfig(backend="openai", model="served", base_url=server.url, **kw))


def test_batch_with_n_samples_and_prefix_continuation(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    gen = make(server)
    requests = [solution_request("What is 2+2?"), solution_request("What is 3+3?", assistant_prefix="Step 1: 3+3")]
    out = gen.generate(requests, SamplingConfig(n=3, max_tokens=50, seed=7))
    assert [len(o) for o in out] == [3, 3]
    assert out[0][0].text.startswith("reply 0") and out[0][0].finish_reason == "stop"
    assert out[0][1].truncated and out[0][0].num_tokens == 10
    plain, prefixed = sorted(server.payloads, key=lambda p: len(p["messages"]))
    assert plain["n"] == 3 and plain["max_tokens"] == 50 and plain["seed"] == 7 and plain["model"] == "served"
    assert "continue_final_message" not in plain
    assert prefixed["messages"][-1] == {"role": "assistant", "content": "Step 1: 3+3"}
    assert prefixed["continue_final_message"] is True and prefixed["add_generation_prompt"] is False
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


@pytest.mark.slow  # waits out retry backoffs
def test_retries_transient_errors(server):
    server.fail_next = [503, 429]
    out = make(server, max_retries=3).generate([solution_request("q")], SamplingConfig(n=1))
    assert out[0][0].text.startswith("reply 0")
    assert len(server.payloads) == 3


@pytest.mark.slow  # waits out retry backoffs
def test_gives_up_after_retries_and_does_not_retry_client_errors(server):
    server.fail_next = [503] * 5
    with pytest.raises(GenerationError, match="no answer after 2 tries"):
        make(server, max_retries=1).generate([solution_request("q")], SamplingConfig(n=1))
    server.fail_next = [400]
    calls = len(server.payloads)
    with pytest.raises(GenerationError, match="HTTP 400"):
        make(server, max_retries=3).generate([solution_request("q")], SamplingConfig(n=1))
    assert len(server.payloads) == calls + 1


def test_unreachable_server_times_out_with_a_clear_error():
    gen = OpenAIServerGenerator(
        GeneratorConfig(
            backend="openai", model="m", base_url="http://127.0.0.1:9/v1", max_retries=0, request_timeout_s=2
        )
    )
    with pytest.raises(GenerationError, match=r"127\.0\.0\.1:9"):
        gen.generate([solution_request("q")], SamplingConfig(n=1))


def test_base_url_is_required():
    with pytest.raises(GenerationError, match="base_url"):
        OpenAIServerGenerator(GeneratorConfig(backend="openai", model="m"))


def test_prompt_longer_than_the_context_is_reported_not_raised():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from rmforge.generators.base import PROMPT_TOO_LONG, ChatMessage, GenerationRequest
    from rmforge.generators.openai_server import OpenAIServerGenerator
    from rmforge.schemas.config import GeneratorConfig, SamplingConfig

    class Overflow(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"error": {"message": "This model\'s maximum context length is 1024 tokens."}}'
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Overflow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        gen = OpenAIServerGenerator(
            GeneratorConfig(backend="openai", model="m", base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        )
        out = gen.generate(
            [GenerationRequest(messages=[ChatMessage(role="user", content="x" * 10)])], SamplingConfig(n=2)
        )
        assert [c.finish_reason for c in out[0]] == [PROMPT_TOO_LONG, PROMPT_TOO_LONG]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_follow_up_request_runs_while_a_slower_one_is_still_in_flight():
    follow_up_arrived = threading.Event()

    def respond(body, index):
        question = body["messages"][-1]["content"]
        if question == "slow":  # answers only once the follow-up of the fast request has arrived
            return "saw the follow-up" if follow_up_arrived.wait(timeout=5) else "no follow-up while in flight"
        if question == "follow-up":
            follow_up_arrived.set()
        return f"answer to {question}"

    server = ChatServer(respond)
    try:
        texts: dict[str, str] = {}

        def keep(question, follow_up=None):
            def then(completions):
                texts[question] = completions[0].text
                return (
                    [PipelinedRequest(solution_request(follow_up), SamplingConfig(), keep(follow_up))]
                    if follow_up
                    else []
                )

            return then

        make(server, max_concurrency=2).run_pipelined(
            PipelinedRequest(solution_request(q), SamplingConfig(), keep(q, follow_up))
            for q, follow_up in (("slow", None), ("fast", "follow-up"))
        )
    finally:
        server.close()
    assert texts == {"slow": "saw the follow-up", "fast": "answer to fast", "follow-up": "answer to follow-up"}
