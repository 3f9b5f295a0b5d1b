"""Deciding claims and labelling a step (`check_claim`, `label_step`)."""

from __future__ import annotations

from verifiers.arithmetic.bounds import Loose, compare_bounds
from verifiers.arithmetic.claims import find_claims
from verifiers.arithmetic.evaluate import fmt, show, tolerance, exact_value
from verifiers.arithmetic.expr import Claim, ClaimResult, Expr, Irrational, Undecidable, Verdict, has_op, is_literal, leading_number
from verifiers.arithmetic.limits import DEFAULT_TIMEOUT_MS, MAX_LISTED
from verifiers.arithmetic.solver import compare_z3


def _compare(a: Expr, b: Expr, rounding: bool, timeout_ms: int) -> tuple[Verdict, str]:
    """Whether a == b, or (rounding) b or a is a decimal rounding of the other."""
    tol = (tolerance(b) or tolerance(a)) if rounding else None
    try:
        va, vb = exact_value(a), exact_value(b)
    except Irrational:
        try:
            return compare_bounds(a, b, tol)
        except Loose:
            return compare_z3(a, b, tol, timeout_ms)
    if va == vb:
        return "correct", ""
    if tol is not None and abs(va - vb) <= tol:
        return "correct", " (rounded)"
    return "incorrect", ""


def _reads_as_conversion(claim: Claim) -> bool:
    """`2 * 60 minutes = 2 hours`: a unit conversion written as an equation."""
    if not (claim.lhs_units and claim.rhs_units) or not claim.lhs_units.isdisjoint(claim.rhs_units):
        return False
    lead = leading_number(claim.lhs)
    return lead is not None and is_literal(claim.rhs) and lead.value == exact_value(claim.rhs)


def check_claim(
    claim: Claim, *, rounding: bool = True, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> ClaimResult:
    """Decide one claim with exact arithmetic (Z3 for irrational roots).

    >>> check_claim(find_claims("12 x 7 = 90")[0]).reason
    '12 x 7 = 90 is false: 12 x 7 = 84'
    """
    try:
        verdict, note = _compare(claim.lhs, claim.rhs, rounding, timeout_ms)
        if verdict == "correct":
            return ClaimResult(claim, "correct", f"{claim.text} holds{note}", claim.text + note)
        lead = claim.running_lead
        if lead is not None and _compare(claim.lhs, lead, rounding, timeout_ms)[0] == "correct":
            running = f"{claim.lhs_text} = {fmt(lead.value)}"
            return ClaimResult(
                claim,
                "correct",
                f"{claim.text} holds as a running total ({running})",
                f"{running} (running total)",
            )
        if _reads_as_conversion(claim):
            return ClaimResult(claim, "unknown", f"{claim.text}: reads as a unit conversion")
    except Undecidable as exc:
        return ClaimResult(claim, "unknown", f"{claim.text}: {exc}")
    actual = ", ".join(
        f"{text} {show(side)}"
        for text, side in ((claim.lhs_text, claim.lhs), (claim.rhs_text, claim.rhs))
        if has_op(side)
    )
    return ClaimResult(claim, "incorrect", f"{claim.text} is false: {actual}")


def label_step(
    step_text: str, *, rounding: bool = True, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> tuple[Verdict, str]:
    """`incorrect` if any claim is false, `correct` if at least one holds and none is
    false (undecidable ones are noted), else `unknown`."""
    results = [
        check_claim(claim, rounding=rounding, timeout_ms=timeout_ms)
        for claim in find_claims(step_text)
    ]
    if not results:
        return "unknown", "no arithmetic claim"
    wrong = [r.reason for r in results if r.verdict == "incorrect"]
    if wrong:
        return "incorrect", "; ".join(wrong)
    right = [r.summary or r.claim.text for r in results if r.verdict == "correct"]
    undecided = [r.reason for r in results if r.verdict == "unknown"]
    if not right:
        return "unknown", "no decidable arithmetic claim: " + "; ".join(undecided)
    listed = "; ".join(right[:MAX_LISTED]) + ("; ..." if len(right) > MAX_LISTED else "")
    counted = f"{len(right)} arithmetic claim{' holds' if len(right) == 1 else 's hold'}"
    reason = f"{counted}: {listed}"
    if undecided:
        reason += f" (undecided: {'; '.join(undecided)})"
    return "correct", reason
