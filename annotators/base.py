"""The annotator contract: a batch of rollouts in, labels out.

Annotators hold no Prefect and no DuckDB. Each one declares a pydantic `Config`;
its hash (with the annotator's name and version) is recorded on every label so
labels made under different settings never overwrite each other.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from rmforge.generators.base import Generator
from rmforge.schemas.config import GeneratorConfig
from rmforge.schemas.records import (
    AnnotatorCost,
    Critique,
    OutcomeLabel,
    Problem,
    Rollout,
    StepLabel,
    Verdict,
    stable_hash,
)


class AnnotationInput(BaseModel):
    """One rollout to label, with its problem and its steps (in order).

    `siblings` are the other stored rollouts of the same problem, loaded only for an
    annotator that reads them (`Annotator.reads_siblings`): a majority vote over final
    answers, or a completer's measured success rate on the problem.
    """

    problem: Problem
    rollout: Rollout
    steps: list[str]
    siblings: list[Rollout] = Field(default_factory=list)


class AnnotationOutput(BaseModel):
    step_labels: list[StepLabel] = Field(default_factory=list)
    outcome_labels: list[OutcomeLabel] = Field(default_factory=list)
    critiques: list[Critique] = Field(default_factory=list)
    costs: list[AnnotatorCost] = Field(default_factory=list)

    def extend(self, other: AnnotationOutput) -> None:
        self.step_labels.extend(other.step_labels)
        self.outcome_labels.extend(other.outcome_labels)
        self.critiques.extend(other.critiques)
        self.costs.extend(other.costs)


# How much a verdict weighs in consensus: human > verifier (a formal or exact checker) > model.
Authority = Literal["model", "verifier", "human"]
AUTHORITY_RANK: dict[str, int] = {"model": 1, "verifier": 2, "human": 3}
# What an annotator's `score` column means.
ScoreKind = Literal["none", "indicator", "probability", "advantage", "vote_share"]


@dataclass(frozen=True)
class Evidence:
    """What an annotator's verdicts are evidence of; curation reads this, never names.

    confirms_steps  its `correct` step verdict is evidence that the step is right
                    (False for refute-only checkers: "no false claim found" proves nothing)
    refutes_steps   its `incorrect` step verdict is evidence that the step is wrong
    labels_outcomes it writes outcome labels (is the final answer / whole solution right)
    authority       rank in consensus: a higher authority outranks a lower one
    score           what its `score` holds: `probability` scores become soft labels
    """

    confirms_steps: bool = False
    refutes_steps: bool = False
    labels_outcomes: bool = False
    authority: Authority = "model"
    score: ScoreKind = "none"

    @property
    def labels_steps(self) -> bool:
        """It writes step labels (an annotator that neither confirms nor refutes steps writes none)."""
        return self.confirms_steps or self.refutes_steps

    @property
    def refute_only(self) -> bool:
        """Its `incorrect` is evidence but its `correct` is not: a `correct` only means "found
        nothing false", an abstention wherever labels are counted (curation, eval, review, reports)."""
        return self.refutes_steps and not self.confirms_steps

    def counts(self, verdict: str) -> bool:
        """Whether a step verdict from this annotator is evidence (else it abstains)."""
        return (verdict == "correct" and self.confirms_steps) or (verdict == "incorrect" and self.refutes_steps)


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnnotatorUnavailable(RuntimeError):
    """The annotator's external tool is missing here (e.g. no `lean` binary)."""


class Provenance(TypedDict):
    """What every label records about who made it."""

    rollout_id: str
    annotator: str
    annotator_version: str
    config_hash: str
    model: str | None
    run_id: str


class Annotator(ABC):
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Config: ClassVar[type[BaseModel]] = NoOptions
    evidence: ClassVar[Evidence]
    # Labels by computing in Python or Z3 rather than waiting on a model or a tool: batches
    # labelled side by side are then run in processes (one GIL per process; a Z3 context
    # must not be shared by threads), see flows/annotate.py.
    cpu_bound: ClassVar[bool] = False
    # Reads the other rollouts of each item's problem (`AnnotationInput.siblings`).
    reads_siblings: ClassVar[bool] = False

    def __init__(
        self,
        config: BaseModel | dict | None = None,
        *,
        default_generator: GeneratorConfig | None = None,
        generator: Generator | None = None,
    ) -> None:
        if isinstance(config, BaseModel):
            config = config.model_dump()
        self.config = self.Config.model_validate(config or {})
        # LLM-backed annotators fall back to the pipeline's generator.
        self.default_generator = default_generator or GeneratorConfig()
        self._generator = generator  # tests inject one at the LLM boundary

    @functools.cached_property
    def config_hash(self) -> str:
        return stable_hash(self.name, self.version, self.config.model_dump(mode="json"), length=12)

    @property
    def model(self) -> str | None:
        """The model behind the labels, when there is one (recorded as provenance)."""
        return None

    def availability(self) -> str | None:
        """None when usable here, else a human-readable reason it is not."""
        return None

    @abstractmethod
    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput: ...

    # Builders that stamp provenance on every label.
    def _provenance(self, item: AnnotationInput, run_id: str) -> Provenance:
        return {
            "rollout_id": item.rollout.rollout_id,
            "annotator": self.name,
            "annotator_version": self.version,
            "config_hash": self.config_hash,
            "model": self.model,
            "run_id": run_id,
        }

    def step_label(
        self,
        item: AnnotationInput,
        step_index: int,
        verdict: Verdict,
        run_id: str,
        *,
        score: float | None = None,
        reason: str | None = None,
        outcome_implied: bool = False,
    ) -> StepLabel:
        return StepLabel(
            **self._provenance(item, run_id),
            step_index=step_index,
            verdict=verdict,
            score=score,
            reason=reason,
            outcome_implied=outcome_implied,
        )

    def outcome_label(
        self,
        item: AnnotationInput,
        verdict: Verdict,
        run_id: str,
        *,
        predicted_answer: str | None = None,
        score: float | None = None,
        reason: str | None = None,
    ) -> OutcomeLabel:
        return OutcomeLabel(
            **self._provenance(item, run_id),
            verdict=verdict,
            predicted_answer=predicted_answer,
            score=score,
            reason=reason,
        )

    def cost(self, item: AnnotationInput, completions: int, run_id: str) -> AnnotatorCost:
        return AnnotatorCost(
            rollout_id=item.rollout.rollout_id,
            annotator=self.name,
            config_hash=self.config_hash,
            completions=completions,
            run_id=run_id,
        )


class LLMAnnotator(Annotator):
    """An annotator that asks a model; its config may name a `generator`."""

    @property
    def generator_config(self) -> GeneratorConfig:
        return getattr(self.config, "generator", None) or self.default_generator

    @property
    def model(self) -> str | None:
        # An injected backend knows its model; otherwise the config names it, without
        # starting an engine just to read a name.
        if self._generator is not None:
            return self._generator.model_name
        return self.generator_config.model

    def load_generator(self) -> Generator:
        """The injected backend, else the process-wide engine for `generator_config`."""
        if self._generator is None:
            from rmforge.generators import load_generator

            self._generator = load_generator(self.generator_config)
        return self._generator
