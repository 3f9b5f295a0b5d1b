"""FoVer-style step verification for first-order logic problems with Z3.

The entailment checks themselves (FOLIO three-way label, inconsistent premises as
"unknown") live in `verifiers.logic.entailment`.

`Z3LogicAnnotator` labels each step of a solution to a logic problem
(`Problem.domain == "logic"`, premises/conclusion in `Problem.metadata`): the step's
formula is correct when the premises and the earlier correct steps entail it. See
`extract_claim` for what a step may look like.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import z3
from pydantic import Field

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from rmforge.schemas.config import Config as StrictConfig
from rmforge.schemas.records import Problem, StepLabel, Verdict
from rmforge.verifiers.logic.entailment import EntailmentResult, Label, PremiseChecker, PremiseError, normalize_label
from rmforge.verifiers.logic.fol import (
    Atom,
    Binary,
    Const,
    Equals,
    FOLParseError,
    Formula,
    Not,
    Quantifier,
    Signature,
    SymbolTable,
    Term,
    Token,
    format_formula,
    parse_tokens,
    signatures,
    tokenize,
)

# --------------------------------------------------------------------------- step text

_MARKUP = re.compile(r"\*\*|__|`|\$")
_STEP_PREFIX = re.compile(r"^\s*(?:[-*•>]\s+)?(?:step\s*\d+\s*[:.)\-–—]?|\(?\d+[.):])?\s*", re.I)
_ANSWER_LINE = re.compile(
    r"^\W*(?:(?:so|thus|therefore|hence)[,\s]+)?(?:the\s+)?(?:final\s+)?(?:answer|label|conclusion)"
    r"(?:\s+is)?\s*[:：=\-–—]?\s*(?:\\boxed\{)?\s*(true|false|uncertain|unknown)\b",
    re.I,
)
# Words that introduce the derived formula: the text after the last one is tried first.
_CONCLUSION_MARKER = re.compile(
    r"\b(?:therefore|thus|hence|so|consequently|it\s+follows(?:\s+that)?"
    r"|we\s+(?:can\s+)?(?:conclude|infer|derive|deduce|get|obtain|have|know)(?:\s+that)?"
    r"|(?:this|which)\s+(?:means|gives|implies|shows)(?:\s+that)?)\b\s*[,:]?",
    re.I,
)
# Words that start a justification after the formula: text before the first one is tried next.
_EXPLANATION_MARKER = re.compile(
    r"\s(?:--|—|–)\s"
    r"|\b(?:because|since|as\s+(?:stated|given|shown)|according\s+to|using|via"
    r"|by\s+(?:premises?|steps?|modus|universal|existential|instantiation|contraposition|the|rule|definition|p\d)"
    r"|from\s+(?:premises?|steps?|p\d|the)|which\s+(?:follows|holds|is))\b"
    r"|\(\s*(?:by|from|premises?|steps?|p\d)\b"
    r"|\banswer\s*:",
    re.I,
)
_HEDGE = re.compile(
    r"\b(?:cannot|can\s*not|can't|could\s+not|couldn't|unable\s+to)\s+(?:be\s+)?"
    r"(?:determine|determined|conclude|concluded|infer|inferred|derive|derived|deduce|deduced"
    r"|prove|proved|proven|establish|established|decide|decided|tell|know)\b"
    r"|\b(?:uncertain|undetermined|not\s+necessarily|no\s+information|insufficient\s+information"
    r"|not\s+enough\s+information|may\s+or\s+may\s+not|unknown\s+whether|not\s+known\s+whether)\b",
    re.I,
)
# Prose that makes the formula an assumption or a case, not a claim: left unchecked.
_HYPOTHETICAL = re.compile(
    r"\b(?:suppose|supposing|assume|assuming|assumption|hypothetically|contradiction|if|case\s+\d+"
    r"|(?:consider|in)\s+the\s+case|let'?s\s+consider)\b",
    re.I,
)
_NEGATED_BEFORE = re.compile(r"\b(?:not\s+the\s+case|false|not\s+true)\s+that\s*[,:]?\s*$", re.I)
_NEGATED_AFTER = re.compile(r"^\s*(?:is\s+false|is\s+not\s+true|does\s+not\s+hold|is\s+not\s+the\s+case)\b", re.I)
_STARTERS = frozenset({"IDENT", "NUMBER", "NOT", "FORALL", "EXISTS", "LPAREN"})
_MAX_TOKENS = 160  # bounds the span search on very long steps


@dataclass(frozen=True)
class Claim:
    """A formula found in a step, with how the prose around it frames it."""

    formula: Formula
    text: str  # the formula as written in the step
    negated: bool = False  # "it is not the case that F" / "F is false"
    hedged: bool = False  # "we cannot determine whether F": claims F is undetermined
    hypothetical: bool = False  # "suppose F", "if F then ...", "case 1: F"

    def describe(self) -> str:
        shown = format_formula(self.formula)
        if self.negated:
            shown = f"¬({shown})"
        return f"undetermined: {shown}" if self.hedged else shown


@dataclass(frozen=True)
class AnswerLine:
    label: Label  # the stated final answer


@dataclass(frozen=True)
class NoClaim:
    reason: str


@dataclass(frozen=True)
class _Candidate:
    formula: Formula
    start: int  # character offsets into the cleaned step text
    end: int
    tokens: int
    known: bool  # every name is in the problem's vocabulary


def _names(formula: Formula) -> set[str]:
    return set(signatures(formula))


def _align_names(formula: Formula, vocabulary: dict[str, Signature]) -> Formula:
    """Steps often change a name's case (`Smart(Rina)` for the premises' `rina`): map a
    name the problem lacks onto the one problem name that differs only in case."""
    folded: dict[str, list[str]] = {}
    for name in vocabulary:
        folded.setdefault(name.lower(), []).append(name)

    def fix(name: str) -> str:
        if name in vocabulary:
            return name
        matches = folded.get(name.lower(), [])
        return matches[0] if len(matches) == 1 else name

    def term(t: Term) -> Term:
        return Const(fix(t.name), t.pos) if isinstance(t, Const) else t

    def go(f: Formula) -> Formula:
        if isinstance(f, Atom):
            return Atom(fix(f.pred), tuple(term(a) for a in f.args), f.pos)
        if isinstance(f, Equals):
            return Equals(term(f.left), term(f.right))
        if isinstance(f, Not):
            return Not(go(f.body))
        if isinstance(f, Quantifier):
            return Quantifier(f.kind, f.var, go(f.body))
        return Binary(f.op, go(f.left), go(f.right))

    return go(formula)


def _has_content(formula: Formula, vocabulary: dict[str, Signature]) -> bool:
    """Reject spans of prose that happen to parse: bare words parse as propositions,
    so every proposition must be one the problem uses; predicate applications and
    equalities are formula-like on their own."""
    props: list[str] = []
    applied = False

    def walk(f: Formula) -> None:
        nonlocal applied
        if isinstance(f, Atom):
            if f.args:
                applied = True
            else:
                props.append(f.pred)
        elif isinstance(f, Equals):
            applied = True
        elif isinstance(f, (Not, Quantifier)):
            walk(f.body)
        elif isinstance(f, Binary):
            walk(f.left)
            walk(f.right)

    walk(formula)
    known_props = all(vocabulary.get(p) == Signature("predicate", 0) for p in props)
    return known_props and (applied or bool(props))


def _best_span(
    text: str, lo: int, hi: int, symbols: SymbolTable, vocabulary: dict[str, Signature], errors: list[str]
) -> _Candidate | None:
    """The best parsable token span of text[lo:hi]: names all known first, then the
    longest, then the latest (derived formulas tend to come last)."""
    tokens: list[Token] = [t for t in tokenize(text, lenient=True) if lo <= t.pos and t.end <= hi][:_MAX_TOKENS]
    best: _Candidate | None = None
    for start in range(len(tokens)):
        if tokens[start].kind not in _STARTERS:
            continue
        end = len(tokens)
        while end > start:
            try:
                formula = _align_names(parse_tokens(tokens[start:end], text), vocabulary)
            except FOLParseError as err:
                k = err.token_index
                # A failure at token k recurs for every longer span (the parser looks
                # at most two tokens ahead), so jump straight below it.
                end = end - 1 if k is None else min(end - 1, start + k + 2)
                continue
            if _has_content(formula, vocabulary):
                try:
                    symbols.check(formula, text)
                except FOLParseError as err:
                    errors.append(f"{text[tokens[start].pos : tokens[end - 1].end]!r}: {err.reason}")
                else:
                    cand = _Candidate(
                        formula,
                        tokens[start].pos,
                        tokens[end - 1].end,
                        end - start,
                        known=_names(formula) <= set(vocabulary),
                    )
                    if best is None or (cand.known, cand.tokens, cand.start) > (best.known, best.tokens, best.start):
                        best = cand
                    break
            end -= 1
    return best


def _regions(text: str) -> list[tuple[int, int]]:
    """Where to look for the formula, most specific first."""
    regions: list[tuple[int, int]] = []
    marks = list(_CONCLUSION_MARKER.finditer(text))
    if marks:
        lo = marks[-1].end()
        cut = _EXPLANATION_MARKER.search(text, lo)
        regions.append((lo, cut.start() if cut else len(text)))
    cut = _EXPLANATION_MARKER.search(text)
    if cut and cut.start() > 0:
        regions.append((0, cut.start()))
    regions.append((0, len(text)))
    return list(dict.fromkeys(regions))


def extract_claim(
    step: str, symbols: SymbolTable, vocabulary: dict[str, Signature] | None = None
) -> Claim | AnswerLine | NoClaim:
    """Find the one formula a step derives.

    Accepts `Step N:` / `N.` / bullet prefixes, markdown and `$...$`, leading prose
    ("Therefore,", "So", "we conclude that"), trailing justifications (after ` -- `,
    "because", "since", "by premise 2", "(from step 1)"), and picks the longest
    span that parses, preferring spans whose names all occur in the problem. Names
    that differ from a problem name only in case are mapped onto it. A line
    stating the final answer ("Answer: True") is returned as `AnswerLine`.
    """
    vocabulary = symbols.snapshot() if vocabulary is None else vocabulary
    text = _STEP_PREFIX.sub("", _MARKUP.sub(" ", step), count=1).strip()
    answer = _ANSWER_LINE.match(text)
    if answer:
        label = normalize_label(answer.group(1))
        assert label is not None
        return AnswerLine(label)
    if not text:
        return NoClaim("empty step")
    errors: list[str] = []
    for lo, hi in _regions(text):
        found = _best_span(text, lo, hi, symbols, vocabulary, errors)
        if found is None:
            continue
        before, after = text[: found.start], text[found.end :]
        prose = f"{before} {after}"
        hedged = bool(_HEDGE.search(prose))  # "cannot determine if F" is a hedge, not a supposition
        return Claim(
            formula=found.formula,
            text=text[found.start : found.end],
            negated=bool(_NEGATED_BEFORE.search(before) or _NEGATED_AFTER.match(after)),
            hedged=hedged,
            hypothetical=not hedged and bool(_HYPOTHETICAL.search(prose)),
        )
    if errors:
        return NoClaim(f"no usable formula in step: {errors[0]}")
    return NoClaim("no formula found in step")


# --------------------------------------------------------------------------- annotator


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
            unknown_names = sorted(_names(found.formula) - set(vocabulary))
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
