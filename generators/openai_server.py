"""Backend for any OpenAI-compatible chat server (`vllm serve`, SGLang, TGI, APIs).

Requests run concurrently (bounded), each with a timeout and retries with
exponential backoff on transport errors, 429 and 5xx. A pipelined caller's follow-up
requests take a free slot as soon as the request they follow has returned. An assistant prefix is sent
as a final assistant message with vLLM's `continue_final_message`, so the server
continues that text instead of starting a new turn.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import time
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.pool import ThreadPool
from typing import Any, TypeVar

import httpx

from rmforge.generators.base import (
    BackendUnavailable,
    Completion,
    GenerationError,
    GenerationRequest,
    Generator,
    PipelinedRequest,
    generate_pipelined,
    progress_callback,
    prompt_too_long,
)
from rmforge.schemas.config import GeneratorConfig, SamplingConfig

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
# vLLM, SGLang and OpenAI word a prompt longer than the context like this (HTTP 400).
_CONTEXT_OVERFLOW = re.compile(r"context length|context window|maximum context|max_model_len|too long", re.I)


class ServerPool:
    """The HTTP servers of one model (`base_url`, or several in `base_urls`): each request goes to
    the next server round-robin, across batches too, at most `max_concurrency` per server at a time,
    each with a timeout and retries with exponential backoff on transport errors, 429 and 5xx.

    `setting` names where the user sets the address, for the error when there is none.
    """

    def __init__(self, config: GeneratorConfig, setting: str = "generator.base_url") -> None:
        servers = config.base_urls or ([config.base_url] if config.base_url else [])
        if not servers:
            raise BackendUnavailable(f"the openai backend needs {setting} (e.g. http://host:8000/v1)")
        self.config = config
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(config.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._servers = [
            (
                url,
                httpx.Client(
                    base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(config.request_timeout_s)
                ),
            )
            for url in servers
        ]
        self._turns = itertools.count()  # next() on a count is atomic under the GIL

    def post(self, path: str, payload: dict[str, Any]) -> tuple[str, Any]:
        """(the server's URL, its reply body) from the next server; the body is None when the
        server says the prompt exceeds the model's context."""
        url, client = self._servers[next(self._turns) % len(self._servers)]
        last_error = ""
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(min(2**attempt * 0.5, 30.0))
            try:
                response = client.post(path, json=payload)
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in _RETRYABLE_STATUS:
                last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code == 400 and _CONTEXT_OVERFLOW.search(response.text):
                return url, None
            if response.status_code >= 400:
                raise GenerationError(f"HTTP {response.status_code}: {response.text[:500]}")
            try:
                return url, response.json()
            except ValueError:  # a proxy's HTML error page, a cut body: retried like a 502
                last_error = f"reply is not JSON: {response.text[:200]!r}"
        raise GenerationError(f"{url}: no answer after {self.config.max_retries + 1} tries ({last_error})")

    def thread_pool(self) -> ThreadPool:
        """Threads for requests to these servers: `max_concurrency` per server; the rest wait in its
        queue. ThreadPool's workers are daemon threads: an interrupted batch (Ctrl-C, SIGTERM) does
        not keep the process alive until a slow server answers the requests in flight."""
        return ThreadPool(self.config.max_concurrency * len(self._servers))

    def map(self, function: Callable[[_Item], _Result], items: Sequence[_Item]) -> list[_Result]:
        """`function` over `items` in threads, as many at once as the servers take; in order."""
        pool = self.thread_pool()
        try:
            return pool.map(function, items, chunksize=1)
        finally:
            pool.close()

    def close(self) -> None:
        for _, client in self._servers:
            client.close()


class OpenAIServerGenerator(Generator):
    backend = "openai"

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self._servers = ServerPool(config)

    @property
    def model_name(self) -> str:
        return self.config.model

    def _payload(self, request: GenerationRequest, sampling: SamplingConfig) -> dict[str, Any]:
        messages = [m.model_dump() for m in request.messages]
        payload: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            payload["seed"] = sampling.seed
        if sampling.stop:
            payload["stop"] = sampling.stop
        if request.assistant_prefix:
            messages.append({"role": "assistant", "content": request.assistant_prefix})
            payload["continue_final_message"] = True
            payload["add_generation_prompt"] = False
        return payload

    def _complete(self, request: GenerationRequest, sampling: SamplingConfig) -> list[Completion]:
        url, body = self._servers.post("/chat/completions", self._payload(request, sampling))
        if body is None:
            return prompt_too_long(sampling.n)
        return _completions(body, sampling.n, url)

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[list[Completion]]:
        return generate_pipelined(self.run_pipelined, requests, sampling)

    def run_pipelined(self, requests: Iterable[PipelinedRequest]) -> None:
        on_progress = progress_callback()
        # (the request, its completions or the error that ended it), in the order they finish
        finished: queue.SimpleQueue[tuple[PipelinedRequest, list[Completion] | BaseException]] = queue.SimpleQueue()

        def complete(item: PipelinedRequest) -> None:
            try:
                completions = self._complete(item.request, item.sampling)
            except BaseException as exc:  # noqa: BLE001  # raised in the calling thread, never left waiting
                finished.put((item, exc))
                return
            if on_progress is not None:
                tokens = [c.num_tokens for c in completions if c.num_tokens is not None]
                on_progress(len(completions), sum(tokens) if len(tokens) == len(completions) else None)
            finished.put((item, completions))

        pool = self._servers.thread_pool()
        in_flight = 0
        try:
            for item in requests:
                pool.apply_async(complete, (item,))
                in_flight += 1
            while in_flight:
                item, result = finished.get()
                in_flight -= 1
                if isinstance(result, BaseException):
                    raise result
                for follow_up in item.then(result):  # `then` runs here, never in a worker
                    pool.apply_async(complete, (follow_up,))
                    in_flight += 1
        finally:
            pool.close()

    def close(self) -> None:
        self._servers.close()


def _completions(body: Any, n: int, server: str) -> list[Completion]:
    """The `n` completions of a chat reply; GenerationError naming what is malformed.

    A reply without a usable message never becomes an empty completion: graded, that
    would be a silent "incorrect".
    """
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list):
        raise GenerationError(f"{server}: malformed reply, no `choices` list: {str(body)[:200]}")
    if len(choices) != n:
        raise GenerationError(f"{server}: server returned {len(choices)} choices, asked for {n}")

    def index(choice: Any) -> int:
        value = choice.get("index") if isinstance(choice, dict) else None
        return value if isinstance(value, int) else 0

    completions = []
    for position, choice in enumerate(sorted(choices, key=index)):
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise GenerationError(f"{server}: malformed reply, choice {position} has no message content")
        completions.append((content, choice.get("finish_reason")))
    usage = body.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    per_choice_tokens = tokens // n if isinstance(tokens, int) else None
    return [Completion(text=text, num_tokens=per_choice_tokens, finish_reason=reason) for text, reason in completions]
