"""The one interface every LLM backend implements.

A request is a chat conversation plus an optional prefix of the assistant's
answer: with a prefix the model continues that text (Monte Carlo completions
from a step prefix); without one it answers from scratch (rollouts, judges).
Backends take whole batches so the engine can schedule them together.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Sequence

from pydantic import BaseModel

from schemas.config import SamplingConfig


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


class GenerationError(RuntimeError):
    """A backend failed to produce completions (after its own retries)."""


class Generator(ABC):
    """An LLM backend. `generate` returns, per request, `sampling.n` completions."""

    backend: str

    @property
    @abstractmethod
    def model_name(self) -> str: ...

    @abstractmethod
    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingConfig
    ) -> list[list[Completion]]: ...

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release engine resources."""
