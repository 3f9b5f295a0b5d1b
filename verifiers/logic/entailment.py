"""First-order entailment with Z3 (FoVer-style checks of FOLIO-notation formulas).

`entailment(premises, conclusion)` decides the FOLIO three-way label with two
solver checks over one solver (premises asserted once, push/pop per query):

    premises ∧ ¬conclusion unsat  -> "true"
    premises ∧ conclusion unsat   -> "false"
    both satisfiable              -> "uncertain"
    anything else                 -> "unknown"   (parse error, timeout, solver unknown)

Both checks unsat means the premises are inconsistent: every conclusion would be
"true" (and "false"), so the answer is "unknown" with reason "premises are
inconsistent". A "true"/"false" verdict is only given once the premises are shown
satisfiable (the other check came back sat, or a third check on the premises alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import z3

from rmforge.verifiers.logic.fol import FOLParseError, SymbolTable, parse_ast

Label = Literal["true", "false", "uncertain", "unknown"]
LABELS: tuple[str, ...] = ("true", "false", "uncertain")


@dataclass(frozen=True)
class EntailmentResult:
    verdict: Label
    reason: str | None = None  # why, when the verdict is "unknown"


def normalize_label(value: object) -> Label | None:
    """'True'/'false'/'Uncertain'/'Unknown' (FOLIO's name for uncertain) -> a label."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return None
    text = value.strip().strip(".*`'\"").strip().lower()
    if text in ("true", "yes", "entailed", "entailment"):
        return "true"
    if text in ("false", "no", "contradiction", "refuted"):
        return "false"
    if text in ("uncertain", "unknown", "neutral", "undetermined"):
        return "uncertain"
    return None


class PremiseError(ValueError):
    """A premise does not parse (`index` is 1-based)."""

    def __init__(self, index: int, error: FOLParseError) -> None:
        self.index = index
        self.error = error
        super().__init__(f"premise {index} does not parse: {error}")


class PremiseChecker:
    """Premises parsed once into one solver; each query is a push/check/pop, so many
    claims (a conclusion, every step of a solution) share the work."""

    def __init__(self, premises: Sequence[str], *, timeout_ms: int = 5000, symbols: SymbolTable | None = None) -> None:
        self.symbols = symbols if symbols is not None else SymbolTable()
        parsed: list[z3.BoolRef] = []
        for i, text in enumerate(premises, start=1):
            try:
                parsed.append(self.formula(text))
            except FOLParseError as err:
                raise PremiseError(i, err) from None
        self.solver = z3.Solver()
        self.solver.set("timeout", int(timeout_ms))  # quantifiers can make Z3 search forever
        self.solver.add(*parsed)

    def formula(self, text: str) -> z3.BoolRef:
        """Parse a formula in this problem's symbol table (raises FOLParseError)."""
        return self.symbols.to_z3(parse_ast(text), text)

    def check(self, *extra: z3.BoolRef) -> z3.CheckSatResult:
        self.solver.push()
        try:
            self.solver.add(*extra)
            return self.solver.check()
        finally:
            self.solver.pop()

    def assume(self, fact: z3.BoolRef) -> None:
        """Keep an entailed fact for later queries (a lemma: it changes no models)."""
        self.solver.add(fact)

    def why_unknown(self) -> str:
        return f"solver returned unknown ({self.solver.reason_unknown() or 'no reason given'})"

    def classify(self, claim: z3.BoolRef) -> EntailmentResult:
        refute = self.check(z3.Not(claim))  # unsat: premises entail the claim
        support = self.check(claim)  # unsat: premises entail its negation
        if refute == z3.unsat and support == z3.unsat:
            return EntailmentResult("unknown", "premises are inconsistent")
        if refute == z3.sat and support == z3.sat:
            return EntailmentResult("uncertain")
        if z3.unsat in (refute, support):
            # Entailed one way; only trust it once the premises are known satisfiable.
            other = support if refute == z3.unsat else refute
            consistent = other if other != z3.unknown else self.check()
            if consistent == z3.unsat:
                return EntailmentResult("unknown", "premises are inconsistent")
            if consistent == z3.unknown:
                return EntailmentResult("unknown", f"consistency of the premises not established: {self.why_unknown()}")
            return EntailmentResult("true" if refute == z3.unsat else "false")
        return EntailmentResult("unknown", self.why_unknown())

    def label(self, text: str) -> EntailmentResult:
        """The FOLIO label of one formula given the premises."""
        try:
            claim = self.formula(text)
        except FOLParseError as err:
            return EntailmentResult("unknown", f"does not parse: {err}")
        return self.classify(claim)

    def entails(self, text: str) -> bool | None:
        """Whether the premises entail the formula (None: unparsable or solver unknown).
        One check only: says nothing about the premises' consistency."""
        try:
            claim = self.formula(text)
        except FOLParseError:
            return None
        result = self.check(z3.Not(claim))
        return None if result == z3.unknown else result == z3.unsat


def entailment_with_reason(premises: Sequence[str], conclusion: str, *, timeout_ms: int = 5000) -> EntailmentResult:
    """The FOLIO label of `conclusion` given `premises`, with a reason when unknown."""
    try:
        checker = PremiseChecker(premises, timeout_ms=timeout_ms)
    except PremiseError as err:
        return EntailmentResult("unknown", str(err))
    result = checker.label(conclusion)
    if result.reason and result.reason.startswith("does not parse"):
        return EntailmentResult("unknown", f"conclusion {result.reason}")
    return result


def entailment(premises: Sequence[str], conclusion: str, *, timeout_ms: int = 5000) -> str:
    """The label alone: one of true, false, uncertain, unknown (see module docstring)."""
    return entailment_with_reason(premises, conclusion, timeout_ms=timeout_ms).verdict
