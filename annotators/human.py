"""Human verdicts: reviewers in `rmforge review`, or human labels shipped with a dataset.

Nothing runs here: labels come from people (the review app) or from importers of
human-labelled data (ProcessBench, PRM800K). They are ordinary step and outcome
labels with annotator `human`, the reviewer's name as `model` and the time as
`labeled_at`; the reviewer is part of the config, so two reviewers of the same
rollout keep separate labels. Human verdicts outrank every other annotator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from rmforge.schemas.config import Config as StrictConfig


class HumanAnnotator(Annotator):
    name: ClassVar[str] = "human"
    version: ClassVar[str] = "1"
    evidence: ClassVar[Evidence] = Evidence(
        confirms_steps=True, refutes_steps=True, labels_outcomes=True, authority="human"
    )

    class Config(StrictConfig):
        reviewer: str = Field(default="anonymous", min_length=1, max_length=200)

    config: Config

    @property
    def model(self) -> str | None:
        return self.config.reviewer

    def availability(self) -> str | None:
        return "human labels come from `rmforge review` or an import of human-labelled data"

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        raise NotImplementedError(self.availability())
