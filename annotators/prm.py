"""Label each step with a trained process reward model (PRM): one forward pass per solution.

The model (a `Scorer`: the vLLM engine's pooling runner or a vLLM server's `/pooling`
endpoint) returns the probability that each step is right, stored as the label's `score`.
Verdicts come from two thresholds: `correct` from `correct_threshold` up, `incorrect` at or
below `incorrect_threshold`, `unknown` in the band between (the score stays on the label). A
score speaks for the step as the model reads it after the steps before it; every step gets its
own, wrong prefix or not. A solution longer than the model's context gets `unknown` labels
saying so; a rollout without steps gets none.

Like a judge it is a model: its verdicts confirm and refute, at `model` authority, so formal
verifiers and humans outrank it and Qwen-style consensus (`required_annotators: [mc, judge,
prm]`) can ask for its agreement.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from rmforge.generators.scorers import Scorer, StepScoreRequest
from rmforge.schemas.config import Config as StrictConfig
from rmforge.schemas.config import ScorerConfig
from rmforge.schemas.records import Verdict


def verdict_for(score: float, correct_threshold: float, incorrect_threshold: float) -> Verdict:
    """`correct` from `correct_threshold` up, `incorrect` at or below `incorrect_threshold`, else `unknown`."""
    if score >= correct_threshold:
        return "correct"
    if score <= incorrect_threshold:
        return "incorrect"
    return "unknown"


class ProcessRewardAnnotator(Annotator):
    """Every step scored by a trained process reward model (Qwen2.5-Math-PRM style); no gold needed."""

    name = "prm"
    version = "1"
    evidence = Evidence(confirms_steps=True, refutes_steps=True, authority="model", score="probability")

    class Config(StrictConfig):
        scorer: ScorerConfig = Field(
            default_factory=ScorerConfig,
            description="The reward model and how to reach it (backend vllm|openai, model, base_url, "
            "step_separator, positive_class, engine and server options as for a generator).",
        )
        correct_threshold: float = Field(
            default=0.7, ge=0.0, le=1.0, description="A step scoring at least this is `correct`."
        )
        incorrect_threshold: float = Field(
            default=0.3,
            ge=0.0,
            le=1.0,
            description="A step scoring at most this is `incorrect`; between the two: `unknown`. "
            "Qwen's ProcessBench numbers use 0.5 for both.",
        )

        @model_validator(mode="after")
        def _ordered_thresholds(self) -> ProcessRewardAnnotator.Config:
            if self.incorrect_threshold > self.correct_threshold:
                raise ValueError(
                    f"incorrect_threshold {self.incorrect_threshold} is above correct_threshold {self.correct_threshold}"
                )
            return self

    config: Config

    @property
    def model(self) -> str | None:
        return self.config.scorer.model or None

    def availability(self) -> str | None:
        if not self.config.scorer.model:
            return "no reward model set (annotator_options: {prm: {scorer: {model: ...}}})"
        return None

    def load_scorer(self) -> Scorer:
        from rmforge.generators import load_scorer

        return load_scorer(self.config.scorer)

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        output = AnnotationOutput()
        todo = [item for item in items if item.steps]  # no steps, nothing to score
        if not todo:
            return output
        requests = [StepScoreRequest(question=item.problem.question, steps=item.steps) for item in todo]
        # One call for the whole batch so the engine schedules every solution together.
        results = self.load_scorer().score_steps(requests)
        if len(results) != len(todo):
            raise RuntimeError(f"scorer returned {len(results)} results for {len(todo)} requests")
        for item, scores in zip(todo, results):
            if scores is None:
                reason = f"the solution is longer than {self.model}'s context"
                if self.config.scorer.backend == "vllm":
                    reason += f" ({self.config.scorer.max_model_len} tokens, scorer.max_model_len)"
                output.step_labels.extend(
                    self.step_label(item, index, "unknown", run_id, reason=reason) for index in range(len(item.steps))
                )
                continue
            for index, score in enumerate(scores):
                verdict = verdict_for(score, self.config.correct_threshold, self.config.incorrect_threshold)
                output.step_labels.append(
                    self.step_label(item, index, verdict, run_id, score=score, reason=self._reason(score, verdict))
                )
        return output

    def _reason(self, score: float, verdict: Verdict) -> str:
        bounds = {
            "correct": f">= {self.config.correct_threshold}",
            "incorrect": f"<= {self.config.incorrect_threshold}",
            "unknown": f"between {self.config.incorrect_threshold} and {self.config.correct_threshold}",
        }
        return f"PRM score {score:.3f} {bounds[verdict]}"
