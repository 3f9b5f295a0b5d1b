"""A scripted LLM for tests: stands at the true external boundary (the model).

It answers from the request's assistant prefix, so tests control which prefixes
"can still reach" the gold answer, and it records every request and sampling it
received. `respond` returns the text, or (text, finish_reason).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence

from rmforge.generators.base import Completion, GenerationRequest, Generator, PipelinedRequest, generate_pipelined
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


class SimulatedEngine(ScriptedGenerator):
    """The scripted model behind a streaming engine: up to `slots` requests run at once, a request
    takes `steps(request)` engine steps, and each finished request's follow-ups join before the
    next step. It records how many requests ran at each step (`running`) and the order requests
    finished in. `generate` is one batch through the same engine."""

    backend = "simulated"

    def __init__(
        self,
        respond: Callable[[GenerationRequest, int], str | tuple[str, str]],
        slots: int,
        steps: Callable[[GenerationRequest], int] = lambda request: 1,
    ) -> None:
        super().__init__(respond)
        self.slots, self.steps = slots, steps
        self.running: list[int] = []
        self.finished: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[list[Completion]]:
        return generate_pipelined(self.stream, requests, sampling)

    def run_pipelined(self, requests: Iterable[PipelinedRequest]) -> None:
        self.stream(requests)

    def stream(self, requests: Iterable[PipelinedRequest]) -> None:
        waiting = deque(requests)
        running: list[tuple[int, PipelinedRequest]] = []  # (the step it finishes after, the request)
        step = 0
        while waiting or running:
            while waiting and len(running) < self.slots:
                item = waiting.popleft()
                self.requests.append(item.request)
                self.samplings.append(item.sampling)
                self.samples += item.sampling.n
                running.append((step + self.steps(item.request), item))
            self.running.append(len(running))
            step += 1
            done = [item for end, item in running if end <= step]
            running = [(end, item) for end, item in running if end > step]
            for item in done:
                self.finished.append(item.request)
                waiting.extend(item.then([self._completion(item.request, i) for i in range(item.sampling.n)]))


class RoundBasedEngine(SimulatedEngine):
    """The same engine driven in rounds (the base class's `run_pipelined`): a round's follow-ups
    wait for its slowest request."""

    run_pipelined = Generator.run_pipelined
