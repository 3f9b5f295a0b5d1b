"""Label each step by checking the explicit arithmetic claims in it (`16 - 3 - 4 = 9`).

The checker is `verifiers.arithmetic` (what it reads, how, and its bounds are described
there); this module wraps it as an annotator. It refutes only: `correct` means "no false
claim found", which the consensus does not count as evidence that a step is right. A step
the checker cannot read (out of bounds, or a checker error) is `unknown` with the reason,
and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from rmforge.schemas.config import Config as StrictConfig
from rmforge.schemas.records import Verdict
from rmforge.verifiers.arithmetic import DEFAULT_TIMEOUT_MS, label_step

_SCORES: dict[str, float] = {"correct": 1.0, "incorrect": 0.0}


class Z3ArithmeticAnnotator(Annotator):
    """One label per step from the explicit arithmetic in it; no model, no gold needed."""

    name = "z3_arith"
    version = "3"  # 3: claims the writer rejects, asks or supposes, and shown GSM8K results
    # Refute-only: finding no false claim is no evidence that a step is right.
    evidence = Evidence(refutes_steps=True, authority="verifier", score="indicator")
    cpu_bound = True

    class Config(StrictConfig):
        timeout_ms: int = Field(default=DEFAULT_TIMEOUT_MS, ge=1, le=60_000, description="Z3 timeout per check.")
        rounding_tolerance: bool = Field(
            default=True, description="Accept `10 / 3 = 3.33`: half a unit in the last place."
        )

    config: Config

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        out = AnnotationOutput()
        # Rollouts of one problem share steps (Monte Carlo prefixes): label each text once.
        memo: dict[str, tuple[Verdict, str]] = {}
        for item in items:
            for index, step in enumerate(item.steps):
                if step not in memo:
                    memo[step] = self._label(step)
                verdict, reason = memo[step]
                out.step_labels.append(
                    self.step_label(item, index, verdict, run_id, score=_SCORES.get(verdict), reason=reason)
                )
        return out

    def _label(self, step: str) -> tuple[Verdict, str]:
        try:
            return label_step(step, rounding=self.config.rounding_tolerance, timeout_ms=self.config.timeout_ms)
        except Exception as exc:  # noqa: BLE001  # a checker bug on one step must not stop the batch
            return "unknown", f"checker error: {type(exc).__name__}: {exc}"
