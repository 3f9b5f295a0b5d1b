"""A scripted LLM for tests: stands at the true external boundary (the model).

It answers from the request's assistant prefix, so tests control which prefixes
"can still reach" the gold answer, and it records every request and sampling it
received. `respond` returns the text, or (text, finish_reason).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rmforge.generators.base import Completion, GenerationRequest, Generator
from rmforge.schemas.config import SamplingConfig


class ScriptedGenerator(Generator):
    backend = "scripted"

    def __init__(
        self, respond: Callable[[GenerationRequest, int], str | tuple[str, str]], finish_reason: str = "stop"
    ) -> None:
        self.respond = respond
        self.finish_reason = finish_reason
        self.requests: list[GenerationRequest] = []
        self.samplings: list[SamplingConfig] = []
        self.samples = 0

    @property
    def model_name(self) -> str:
        return "scripted"

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[list[Completion]]:
        self.requests.extend(requests)
        self.samplings.append(sampling)
        self.samples += len(requests) * sampling.n
        return [[self._completion(r, i) for i in range(sampling.n)] for r in requests]

    def _completion(self, request: GenerationRequest, index: int) -> Completion:
        reply = self.respond(request, index)
        text, finish_reason = reply if isinstance(reply, tuple) else (reply, self.finish_reason)
        return Completion(text=text, num_tokens=5, finish_reason=finish_reason)
