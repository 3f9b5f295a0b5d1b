"""The one interface every LLM backend implements.

A request is a chat conversation plus an optional prefix of the assistant's
answer: with a prefix the model continues that text (Monte Carlo completions
from a step prefix); without one it answers from scratch (rollouts, judges).
Backends take whole batches so the engine can schedule them together. A caller whose
next requests depend on earlier answers (a Monte Carlo search) uses `run_pipelined`
instead: each request's follow-ups join the engine as soon as its own completions are in,
so the engine is not left waiting for the slowest request of a round. While requests run,
backends report finished requests to the `generation_progress` callback of the caller's
context, if any (the caller may be several layers up, e.g. a flow around an annotator
that samples completions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Literal

from pydantic import BaseModel

from rmforge.schemas.config import SamplingConfig


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationRequest(BaseModel):
    messages: list[ChatMessage]
    assistant_prefix: str = ""


# finish_reason of a request whose prompt alone exceeds the model's context: nothing was
# generated, which says nothing about the prompt (unlike "length", a truncated answer).
PROMPT_TOO_LONG = "prompt_too_long"


class Completion(BaseModel):
    text: str
    num_tokens: int | None = None
    finish_reason: str | None = None
    cumulative_logprob: float | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def prompt_too_long(n: int) -> list[Completion]:
    """The n completions of a request whose prompt alone exceeds the context: nothing generated."""
    return [Completion(text="", num_tokens=0, finish_reason=PROMPT_TOO_LONG)] * n


@dataclass(frozen=True)
class PipelinedRequest:
    """A request, and what follows from its completions: `then` reads them and returns the
    requests to run next (none: this line of work is done)."""

    request: GenerationRequest
    sampling: SamplingConfig
    then: Callable[[list[Completion]], Iterable[PipelinedRequest]]


class GenerationError(RuntimeError):
    """A backend failed to produce completions (after its own retries)."""


class BackendUnavailable(GenerationError):
    """The backend could not start (engine spawn, model load, missing extra) or has died.

    No request is at fault: whoever asked should stop and try again later, not record a
    result for what it asked.
    """


class Generator(ABC):
    """An LLM backend. `generate` returns, per request, `sampling.n` completions."""

    backend: str

    @property
    @abstractmethod
    def model_name(self) -> str: ...

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[list[Completion]]: ...

    def run_pipelined(self, requests: Iterable[PipelinedRequest]) -> None:
        """Run the requests and every request their `then` returns, until none is left.

        Each `then` runs in the calling thread. A backend with a streaming engine calls it as
        soon as that request finishes and adds its follow-ups to the running ones (vLLM's
        step loop, concurrent HTTP requests); this default runs them in rounds instead, one
        `generate` call per sampling per round, so any backend can serve a pipelined caller.
        """
        pending = list(requests)
        while pending:
            rounds: dict[str, list[PipelinedRequest]] = {}
            for item in pending:  # one call per sampling, the requests in the order they came
                rounds.setdefault(item.sampling.model_dump_json(), []).append(item)
            pending = []
            for batch in rounds.values():
                outputs = self.generate([item.request for item in batch], batch[0].sampling)
                for item, completions in zip(batch, outputs, strict=True):
                    pending.extend(item.then(completions))

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release engine resources."""


# (completions finished, tokens they generated or None when the backend cannot tell)
ProgressCallback = Callable[[int, "int | None"], None]
_progress_callback: ContextVar[ProgressCallback | None] = ContextVar("generation_progress", default=None)


@contextmanager
def generation_progress(callback: ProgressCallback) -> Iterator[None]:
    """Call `callback` as backends finish requests inside this block (this thread's context)."""
    token = _progress_callback.set(callback)
    try:
        yield
    finally:
        _progress_callback.reset(token)


def generate_pipelined(
    run: Callable[[Iterable[PipelinedRequest]], None], requests: Sequence[GenerationRequest], sampling: SamplingConfig
) -> list[list[Completion]]:
    """`generate` for a backend whose engine loop is `run` (its `run_pipelined`): the requests, no follow-ups."""
    results: list[list[Completion]] = [[] for _ in requests]

    def keep(index: int, completions: list[Completion]) -> list[PipelinedRequest]:
        results[index] = completions
        return []

    run(PipelinedRequest(r, sampling, partial(keep, i)) for i, r in enumerate(requests))
    return results


def progress_callback() -> ProgressCallback | None:
    """The callback of the calling context; backends read it in the thread that called
    `generate` and hand it to their worker threads."""
    return _progress_callback.get()
