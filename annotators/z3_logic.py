"""FoVer-style step verification for first-order logic problems with Z3.

The checker lives in `verifiers.logic`: `extract` finds the formula a step derives
(see `extract_claim` for what a step may look like), `entailment` decides it with Z3
(FOLIO three-way label, inconsistent premises as "unknown").

`Z3LogicAnnotator` labels each step of a solution to a logic problem
(`Problem.domain == "logic"`, premises/conclusion in `Problem.metadata`): the step's
formula is correct when the premises and the earlier correct steps entail it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import z3
from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from rmforge.schemas.config import Config as StrictConfig
from rmforge.schemas.records import Problem, StepLabel, Verdict
from rmforge.verifiers.logic.entailment import EntailmentResult, Label, PremiseChecker, PremiseError, normalize_label
from rmforge.verifiers.logic.extract import AnswerLine, Claim, NoClaim, extract_claim
from rmforge.verifiers.logic.fol import FOLParseError, Signature, signatures


class _ProblemError(ValueError):
    """The problem's own data cannot be used; every step is unknown."""


@dataclass
class _LogicProblem:
    checker: PremiseChecker
    vocabulary: dict[str, Signature]  # names of the premises and conclusion
    conclusion: z3.BoolRef | None
    label: Label | None  # from the metadata, or the gold answer


def _load_problem(problem: Problem, timeout_ms: int) -> _LogicProblem:
    try:
        meta = json.loads(problem.metadata or "{}")
    except json.JSONDecodeError as err:
        raise _ProblemError(f"problem metadata is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise _ProblemError("problem metadata is not a JSON object")
    premises = meta.get("premises")
    if isinstance(premises, str):  # FOLIO stores premises as one newline-separated string
        premises = [line for line in premises.splitlines() if line.strip()]
    if not isinstance(premises, list) or not premises or not all(isinstance(p, str) for p in premises):
        raise _ProblemError("problem metadata has no premises (a list of formula strings)")
    try:
        checker = PremiseChecker(premises, timeout_ms=timeout_ms)
    except PremiseError as err:
        raise _ProblemError(str(err)) from None
    conclusion = None
    if isinstance(meta.get("conclusion"), str):
        try:  # its names join the vocabulary; a bad conclusion only costs the answer check
            conclusion = checker.formula(meta["conclusion"])
        except FOLParseError:
            conclusion = None
    label = normalize_label(meta.get("label")) or normalize_label(problem.gold_answer)
    return _LogicProblem(checker, checker.symbols.snapshot(), conclusion, label)


class Z3LogicAnnotator(Annotator):
    """Labels each step by whether the premises and earlier correct steps entail it.

    correct    the step's formula is entailed (premises ∧ earlier ∧ ¬claim unsat); a
               hedged step ("cannot determine whether F") when neither F nor ¬F is
    incorrect  not entailed, or "contradicts premises" when its negation is entailed
    unknown    no formula found, an assumption/case step, solver unknown or timeout,
               a non-logic problem, unusable metadata, or inconsistent premises
    The final-answer line ("Answer: True") is checked against Z3's label for the
    conclusion. Z3 contexts are not thread-safe: run annotators in processes.
    """

    name = "z3_logic"
    version = "2"  # 2: reads FOLIO typos (unbalanced brackets, curly apostrophes in names)
    evidence = Evidence(confirms_steps=True, refutes_steps=True, authority="verifier")
    cpu_bound = True

    class Config(StrictConfig):
        timeout_ms: int = Field(default=5000, ge=1, description="Z3 timeout per check.")

    config: Config

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        out = AnnotationOutput()
        for item in items:
            out.step_labels.extend(self._label_item(item, run_id))
        return out

    def _all_unknown(self, item: AnnotationInput, run_id: str, reason: str) -> list[StepLabel]:
        return [self.step_label(item, i, "unknown", run_id, reason=reason) for i in range(len(item.steps))]

    def _label_item(self, item: AnnotationInput, run_id: str) -> list[StepLabel]:
        if item.problem.domain != "logic":
            return self._all_unknown(item, run_id, "not a logic problem")
        try:
            problem = _load_problem(item.problem, self.config.timeout_ms)
        except _ProblemError as err:
            return self._all_unknown(item, run_id, str(err))
        prover = problem.checker
        if prover.check() == z3.unsat:
            return self._all_unknown(item, run_id, "premises are inconsistent")

        labels: list[StepLabel] = []
        verified: list[EntailmentResult] = []  # the conclusion's label, computed once if needed
        for index, step in enumerate(item.steps):
            found = extract_claim(step, prover.symbols, problem.vocabulary)
            if isinstance(found, NoClaim):
                labels.append(self.step_label(item, index, "unknown", run_id, reason=found.reason))
            elif isinstance(found, AnswerLine):
                if not verified:
                    verified.append(self._conclusion_label(problem, prover))
                labels.append(self._label_answer(item, index, run_id, found, verified[0], problem.label))
            elif found.hypothetical:
                reason = f"{found.describe()}: assumption or case analysis, not checked"
                labels.append(self.step_label(item, index, "unknown", run_id, reason=reason))
            else:
                claim = prover.symbols.to_z3(found.formula, found.text)
                if found.negated:
                    claim = z3.Not(claim)
                labels.append(self._label_claim(item, index, run_id, found, claim, prover, problem.vocabulary))
        return labels

    def _conclusion_label(self, problem: _LogicProblem, prover: PremiseChecker) -> EntailmentResult:
        if problem.conclusion is None:
            return EntailmentResult("unknown", "conclusion missing or unparsable")
        return prover.classify(problem.conclusion)

    def _label_answer(
        self,
        item: AnnotationInput,
        index: int,
        run_id: str,
        answer: AnswerLine,
        verified: EntailmentResult,
        given: Label | None,
    ) -> StepLabel:
        """The final-answer line is checked against the Z3-verified label of the
        conclusion (the dataset label only when Z3 cannot decide)."""
        expected, source = verified.verdict, "verified"
        if expected == "unknown":
            if given is None:
                return self.step_label(item, index, "unknown", run_id, reason=f"final answer; {verified.reason}")
            expected, source = given, "dataset"
        ok = answer.label == expected
        relation = "matches" if ok else "differs from"
        return self.step_label(
            item,
            index,
            "correct" if ok else "incorrect",
            run_id,
            score=1.0 if ok else 0.0,
            reason=f"final answer {answer.label!r} {relation} the {source} label {expected!r}",
        )

    def _label_claim(
        self,
        item: AnnotationInput,
        index: int,
        run_id: str,
        found: Claim,
        claim: z3.BoolRef,
        prover: PremiseChecker,
        vocabulary: dict[str, Signature],
    ) -> StepLabel:
        shown = found.describe()
        verdict: Verdict
        refute = prover.check(z3.Not(claim))  # unsat: entailed
        if refute == z3.unknown:
            return self.step_label(item, index, "unknown", run_id, reason=f"{shown}: {prover.why_unknown()}")
        support = z3.sat if refute == z3.unsat else prover.check(claim)  # unsat: negation entailed
        if found.hedged:
            if refute == z3.unsat:
                verdict, why = "incorrect", "claimed undetermined, but it is entailed"
            elif support == z3.unsat:
                verdict, why = "incorrect", "claimed undetermined, but the premises entail its negation"
            elif support == z3.unknown:
                return self.step_label(item, index, "unknown", run_id, reason=f"{shown}: {prover.why_unknown()}")
            else:
                verdict, why = "correct", "neither it nor its negation is entailed"
        elif refute == z3.unsat:
            prover.assume(claim)
            verdict, why = "correct", "entailed by the premises and earlier correct steps"
        elif support == z3.unsat:
            verdict, why = "incorrect", "contradicts premises: they entail its negation"
        else:
            verdict, why = "incorrect", "not entailed by the premises and earlier correct steps"
            unknown_names = sorted(set(signatures(found.formula)) - set(vocabulary))
            if unknown_names:
                why += f"; uses names not in the problem: {', '.join(unknown_names)}"
        return self.step_label(
            item,
            index,
            verdict,
            run_id,
            score=1.0 if verdict == "correct" else 0.0,
            reason=f"{shown}: {why}",
        )
