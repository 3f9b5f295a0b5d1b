"""`answer` annotator: one outcome label per rollout from the final-answer checker.

The checker itself (extraction, normalisation, math-verify under a time and memory
bound) lives in `verifiers.answers`; see its docstring for verdicts and bounds. Without
a gold answer every label is `unknown`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from rmforge.schemas.config import Config as StrictConfig
from rmforge.verifiers.answers import MissingAnswer, grade_response


class AnswerAnnotator(Annotator):
    """One outcome label per rollout: is its final answer equivalent to the gold?"""

    name = "answer"
    version = "2"  # 2: no gold is unknown; prose answers read; a missing answer is unknown
    evidence = Evidence(labels_outcomes=True, authority="verifier", score="indicator")
    cpu_bound = True

    class Config(StrictConfig):
        timeout_s: float = Field(default=5.0, gt=0, description="Wall-clock limit per answer comparison (math-verify).")
        missing_answer: MissingAnswer = Field(
            default="unknown",
            description=(
                "Verdict for a finished response with no final answer found: 'unknown' (cannot "
                "tell), or 'incorrect' where the prompt demanded a marked answer."
            ),
        )

    config: Config

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        output = AnnotationOutput()
        for item in items:
            result = grade_response(
                item.rollout.response,
                item.problem.gold_answer,
                finish_reason=item.rollout.finish_reason,
                domain=item.problem.domain,
                timeout_s=self.config.timeout_s,
                question=item.problem.question,
                missing_answer=self.config.missing_answer,
            )
            score = {"correct": 1.0, "incorrect": 0.0}.get(result.verdict)
            output.outcome_labels.append(
                self.outcome_label(
                    item,
                    result.verdict,
                    run_id,
                    predicted_answer=result.predicted,
                    score=score,
                    reason=result.reason,
                )
            )
        return output
