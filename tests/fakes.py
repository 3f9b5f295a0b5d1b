"""A scripted LLM for tests: stands at the true external boundary (the model).

It answers from the request's assistant prefix, so tests control which prefixes
"can still reach" the gold answer, and it records every request it received.
"""

from __future__ import annotations

from typing import Callable, Sequence

from generators.base import Completion, GenerationRequest, Generator
from schemas.config import SamplingConfig


class ScriptedGenerator(Generator):
    backend = "scripted"

    def __init__(self, respond: Callable[[GenerationRequest, int], str], finish_reason: str = "stop") -> None:
        self.respond = respond
        self.finish_reason = finish_reason
        self.requests: list[GenerationRequest] = []
        self.samples = 0

    @property
    def model_name(self) -> str:
        return "scripted"

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[list[Completion]]:
        self.requests.extend(requests)
        self.samples += len(requests) * sampling.n
        return [
            [Completion(text=self.respond(r, i), num_tokens=5, finish_reason=self.finish_reason) for i in range(sampling.n)]
            for r in requests
        ]
