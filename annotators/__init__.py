"""Step and outcome labelers, one module each, behind `annotators.base.Annotator`.

The registry names modules lazily so an annotator's optional dependencies (vLLM,
a `lean` binary) are only touched when that annotator is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from rmforge.annotators.base import Annotator

REGISTRY: dict[str, str] = {
    "answer": "rmforge.annotators.answer:AnswerAnnotator",
    "z3_arith": "rmforge.annotators.z3_arith:Z3ArithmeticAnnotator",
    "mc": "rmforge.annotators.mc:MonteCarloAnnotator",
    "mc_binary": "rmforge.annotators.mc_binary:BinarySearchMCAnnotator",
    "pav": "rmforge.annotators.pav:ProgressAnnotator",
    "z3_logic": "rmforge.annotators.z3_logic:Z3LogicAnnotator",
    "lean": "rmforge.annotators.lean:LeanAnnotator",
    "judge": "rmforge.annotators.judge:JudgeAnnotator",
    "prm": "rmforge.annotators.prm:ProcessRewardAnnotator",
    "code_check": "rmforge.annotators.code_check:CodeCheckAnnotator",
    "majority": "rmforge.annotators.majority:MajorityAnnotator",
    "human": "rmforge.annotators.human:HumanAnnotator",
}


def annotator_class(name: str) -> type[Annotator]:
    try:
        target = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown annotator {name!r}; known: {known}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_annotator(name: str, config: dict[str, Any] | None = None, **kwargs: Any) -> Annotator:
    return annotator_class(name)(config, **kwargs)
