"""The `lean` annotator: a step is correct only when Lean 4 accepts its proof.

The checker is `verifiers/lean.py` (what a checkable step looks like, the verdicts, how to
install Lean). Each step is checked on its own, in a fresh file: the configured `imports`,
then the problem's `lean_header` (a string in the problem's metadata JSON), then the step's
Lean code. No verdict is ever given without Lean having checked it: `annotate` raises
`AnnotatorUnavailable` when no working `lean` is found.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, AnnotatorUnavailable, Evidence
from rmforge.schemas.config import Config as StrictConfig
from rmforge.schemas.records import StepLabel, Verdict
from rmforge.verifiers.lean import LeanRunner, LeanSource, step_source


class LeanAnnotator(Annotator):
    name = "lean"
    version = "1"
    evidence = Evidence(confirms_steps=True, refutes_steps=True, authority="verifier")

    class Config(StrictConfig):
        lean_path: str | None = Field(default=None, description="None: `lean` on PATH")
        timeout_s: float = Field(default=60.0, gt=0)
        project_dir: str | None = Field(
            default=None, description="A Lake project with Mathlib; runs `lake env lean FILE` in it"
        )
        imports: list[str] = Field(default_factory=lambda: ["Mathlib"])
        workers: int = Field(default=4, ge=1, le=64, description="Lean processes run in parallel")

    config: Config

    def __init__(self, config: Config | dict | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.runner = LeanRunner(self.config.lean_path, self.config.timeout_s, self.config.project_dir)
        self._availability: str | None = None
        self._checked = False

    def availability(self) -> str | None:
        if not self._checked:
            self._availability = self.runner.probe()
            self._checked = True
        return self._availability

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        reason = self.availability()
        if reason is not None:
            raise AnnotatorUnavailable(reason)
        labels: list[StepLabel | None] = []
        jobs: list[tuple[int, AnnotationInput, int, LeanSource]] = []
        for item in items:
            header = _lean_header(item)
            for step_index, step in enumerate(item.steps):
                source = step_source(step, self.config.imports, header)
                if isinstance(source, str):  # why the step is not checked
                    labels.append(self._label(item, step_index, "unknown", source, run_id))
                else:
                    jobs.append((len(labels), item, step_index, source))
                    labels.append(None)  # filled in once Lean has run
        # Each check is a separate `lean` process; threads just wait on them.
        with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
            results = list(pool.map(lambda job: self.runner.check(job[3]), jobs))
        for (slot, item, step_index, _), (verdict, why) in zip(jobs, results):
            labels[slot] = self._label(item, step_index, verdict, why, run_id)
        return AnnotationOutput(step_labels=[label for label in labels if label is not None])

    def _label(self, item: AnnotationInput, step_index: int, verdict: Verdict, reason: str, run_id: str) -> StepLabel:
        score = {"correct": 1.0, "incorrect": 0.0}.get(verdict)
        return self.step_label(item, step_index, verdict, run_id, score=score, reason=reason)


def _lean_header(item: AnnotationInput) -> str:
    try:
        metadata = json.loads(item.problem.metadata or "{}")
    except json.JSONDecodeError:
        return ""
    header = metadata.get("lean_header") if isinstance(metadata, dict) else None
    return header if isinstance(header, str) else ""
