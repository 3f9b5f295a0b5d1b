"""The interface every process reward model backend implements, beside `Generator`.

A scorer reads a question and a solution's steps and returns, in one forward pass, the
probability that each step is right. The conventions follow Qwen2.5-Math-PRM (configurable in
`ScorerConfig`): a chat of the system prompt, the question as the user turn and the steps as
the assistant turn, each step followed by the separator token; the model's classes at each
separator are read as probabilities and `positive_class` is the "right" one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from rmforge.generators.base import GenerationError
from rmforge.schemas.config import ScorerConfig


class StepScoreRequest(BaseModel):
    question: str
    steps: list[str]


class Scorer(ABC):
    """A process reward model backend."""

    backend: str

    def __init__(self, config: ScorerConfig) -> None:
        self.config = config

    @property
    def model_name(self) -> str:
        return self.config.model

    @abstractmethod
    def score_steps(self, requests: Sequence[StepScoreRequest]) -> list[list[float] | None]:
        """Per request, each step's probability of being right (one per step, in order), or None
        when the chat exceeds the model's context. Raises `GenerationError` when the backend fails
        or answers something else (another number of scores, values that are no probabilities)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release engine resources."""

    def messages(self, request: StepScoreRequest) -> list[dict[str, str]]:
        """The chat the model reads: every step followed by the separator.

        The texts are untrusted (written by the policy being labelled): a separator inside them
        would add a scored position and shift every score after it, so it is removed.
        """
        separator = self.config.step_separator
        steps = "".join(without(step, separator) + separator for step in request.steps)
        return [
            {"role": "system", "content": self.config.system_prompt},
            {"role": "user", "content": without(request.question, separator)},
            {"role": "assistant", "content": steps},
        ]

    def positive_probabilities(self, rows: Any, n_steps: int, source: str) -> list[float]:
        """`positive_class` of each row of class probabilities the model returned for one request;
        GenerationError naming `source` when they are not one row per step of probabilities."""
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise GenerationError(f"{source}: expected one list of class probabilities per step, got {str(rows)[:200]}")
        if len(rows) != n_steps:
            raise GenerationError(
                f"{source}: {len(rows)} step scores for {n_steps} steps: the model does not score at "
                f"{self.config.step_separator!r} (scorer.step_separator; a vLLM server's --pooler-config step_tag_id)"
            )
        index = self.config.positive_class
        scores = []
        for row in rows:
            value = row[index] if index < len(row) else None
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise GenerationError(
                    f"{source}: class {index} of {row} is no probability (scorer.positive_class; "
                    "a server must apply the activation)"
                )
            scores.append(float(value))
        return scores


def without(text: str, separator: str) -> str:
    """`text` with every `separator` removed, including one that removing another would form."""
    while separator in text:
        text = text.replace(separator, "")
    return text
