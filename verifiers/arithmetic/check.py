"""Deciding claims and labelling a step (`check_claim`, `label_step`)."""

from __future__ import annotations

import math
import time
from fractions import Fraction

from rmforge.verifiers.arithmetic.bounds import Loose, compare_bounds, has_rounded_operand, may_be_rounding
from rmforge.verifiers.arithmetic.claims import read_claims
from rmforge.verifiers.arithmetic.expr import (
    BinOp,
    Claim,
    ClaimResult,
    Expr,
    Irrational,
    Neg,
    Num,
    Undecidable,
    Verdict,
    has_op,
    is_literal,
    leading_number,
)
from rmforge.verifiers.arithmetic.limits import DEFAULT_TIMEOUT_MS, MAX_LISTED, STEP_BUDGET_MS
from rmforge.verifiers.arithmetic.solver import compare_z3
from rmforge.verifiers.arithmetic.values import (
    approx,
    exact_value,
    fmt,
    has_percent,
    plain_percent,
    show,
    tolerance,
)

# An approximate claim ("about 1,400") this close to the exact value is not called false.
_APPROXIMATE_SHARE = 0.1


def _compare(a: Expr, b: Expr, tol: Fraction | None, timeout_ms: int) -> tuple[Verdict, str]:
    """Whether a == b, or (with a tolerance) b or a is a rounding of the other."""
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


def _tolerance(a: Expr, b: Expr, rounding: bool, approximate: bool) -> Fraction | None:
    if not rounding:
        return None
    return tolerance(b, approximate) or tolerance(a, approximate)


def _reads_as_conversion(claim: Claim) -> bool:
    """`2 * 60 minutes = 2 hours`, `\\frac{1}{2} inch = 20 miles`: a unit conversion or a
    scale written as an equation. The sides name different units, and either the number
    is restated in other units or each side is a quantity as written, not a computation."""
    if not (claim.lhs_units and claim.rhs_units) or not claim.lhs_units.isdisjoint(claim.rhs_units):
        return False
    if _written_quantity(claim.lhs) and _written_quantity(claim.rhs):
        return True
    lead = leading_number(claim.lhs)
    return lead is not None and is_literal(claim.rhs) and lead.value == exact_value(claim.rhs)


def _written_quantity(e: Expr) -> bool:
    """A number as written: `20`, `-3`, `1/2`, `2 1/2` (a proper fraction or a mixed
    number; `90 / 30 per person` divides)."""
    if is_literal(e):
        return True
    if isinstance(e, BinOp) and e.op == "+":  # a mixed number is read as whole + fraction
        return isinstance(e.left, Num) and _proper_fraction(e.right)
    return _proper_fraction(e)


def _proper_fraction(e: Expr) -> bool:
    return (
        isinstance(e, BinOp)
        and e.op == "/"
        and isinstance(e.left, Num)
        and isinstance(e.right, Num)
        and 0 < e.left.value < e.right.value
    )


def _whole_quotient(claim: Claim) -> bool:
    """`2250 / 360 = 6 full turns, with 90 degrees remaining`: the whole quotient of a
    division the step says leaves a remainder."""
    lhs, rhs = claim.lhs, claim.rhs
    if not (claim.remainder and isinstance(lhs, BinOp) and lhs.op == "/" and isinstance(rhs, Num)):
        return False
    try:
        value = exact_value(lhs)
    except Irrational:
        return False
    return rhs.decimals == 0 and value > 0 and rhs.value == math.floor(value)


def _roughly(a: Expr, b: Expr) -> bool:
    """An integer within a tenth of the value: `about 1,400` for 1,363."""
    if not any(isinstance(side, Num) and side.decimals == 0 for side in (a, b)):
        return False
    x, y = approx(a), approx(b)
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    return abs(x - y) <= _APPROXIMATE_SHARE * max(abs(x), abs(y))


def _truncated(a: Expr, b: Expr) -> bool:
    """`2/3 = 0.66`, `0.20 * 85.98 = 17.19`: one side is a decimal literal that is the
    other's value cut short, as calculators and hurried writers do (read either way for
    a percentage)."""
    readings = [(a, b)]
    if has_percent(a) or has_percent(b):
        readings.append((plain_percent(a), plain_percent(b)))
    for x, y in readings:
        for literal, other in ((y, x), (x, y)):
            sign = -1 if isinstance(literal, Neg) else 1
            number = literal.operand if isinstance(literal, Neg) else literal
            if not (isinstance(number, Num) and number.decimals > 0):
                continue
            value: Fraction | None
            try:
                value = exact_value(other)
            except Irrational:
                value = Fraction(approx(other)) if math.isfinite(approx(other)) else None
            if value is None:
                continue
            places = 10 ** (number.decimals + (2 if number.percent else 0))
            if sign * number.value == Fraction(math.trunc(value * places), places):
                return True
    return False


def _computes_with_rounded(claim: Claim, tol: Fraction | None) -> bool:
    """`(2.8284)^2 = 8`: a side computes with a decimal that is itself a rounded value,
    and the sides are as close as that rounding allows."""
    if not (has_rounded_operand(claim.lhs) or has_rounded_operand(claim.rhs)):
        return False
    return may_be_rounding(claim.lhs, claim.rhs, tol)


def check_claim(claim: Claim, *, rounding: bool = True, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> ClaimResult:
    """Decide one claim with exact arithmetic (Z3 for irrational roots).

    `incorrect` only when every reasonable reading is false: a percentage also read as a
    plain number (`0.2 * 100 = 20%`), a running total (`4 + 4 = 8 + 2`), a rounding; a
    claim whose reading is in doubt, or an approximate one near the value, is `unknown`.

    >>> check_claim(find_claims("12 x 7 = 90")[0]).reason
    '12 x 7 = 90 is false: 12 x 7 = 84'
    """
    try:
        tol = _tolerance(claim.lhs, claim.rhs, rounding, claim.approximate)
        verdict, note = _compare(claim.lhs, claim.rhs, tol, timeout_ms)
        if verdict == "correct":
            return ClaimResult(claim, "correct", f"{claim.text} holds{note}", claim.text + note)
        lead = claim.running_lead
        if lead is not None:
            lead_tol = _tolerance(claim.lhs, lead, rounding, claim.approximate)
            if _compare(claim.lhs, lead, lead_tol, timeout_ms)[0] == "correct":
                running = f"{claim.lhs_text} = {fmt(lead.value)}"
                return ClaimResult(
                    claim,
                    "correct",
                    f"{claim.text} holds as a running total ({running})",
                    f"{running} (running total)",
                )
        if has_percent(claim.lhs) or has_percent(claim.rhs):
            lhs, rhs = plain_percent(claim.lhs), plain_percent(claim.rhs)
            tol = _tolerance(lhs, rhs, rounding, claim.approximate)
            if _compare(lhs, rhs, tol, timeout_ms)[0] == "correct":
                note = f"{claim.text} holds reading x% as the number x"
                return ClaimResult(claim, "correct", note, f"{claim.text} (percent as a number)")
        if _whole_quotient(claim):
            note = " (whole quotient; the step speaks of a remainder)"
            return ClaimResult(claim, "correct", f"{claim.text} holds{note}", claim.text + note)
        if _reads_as_conversion(claim):
            return ClaimResult(claim, "unknown", f"{claim.text}: reads as a unit conversion")
        if claim.doubt:
            why = f"{claim.text} is false as read, but {claim.doubt}"
            return ClaimResult(claim, "unknown", why)
        if claim.approximate and _roughly(claim.lhs, claim.rhs):
            why = f"{claim.text}: close, and the step says it approximates"
            return ClaimResult(claim, "unknown", why)
        if rounding and _truncated(claim.lhs, claim.rhs):
            why = f"{claim.text}: the decimal is cut short rather than rounded"
            return ClaimResult(claim, "unknown", why)
        if rounding and _computes_with_rounded(claim, tol):
            why = f"{claim.text}: it computes with a rounded decimal, so its result is approximate"
            return ClaimResult(claim, "unknown", why)
    except Undecidable as exc:
        return ClaimResult(claim, "unknown", f"{claim.text}: {exc}")
    actual = ", ".join(
        f"{text} {show(side)}"
        for text, side in ((claim.lhs_text, claim.lhs), (claim.rhs_text, claim.rhs))
        if has_op(side)
    )
    return ClaimResult(claim, "incorrect", f"{claim.text} is false: {actual}")


def label_step(
    step_text: str,
    *,
    rounding: bool = True,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    budget_ms: int = STEP_BUDGET_MS,
) -> tuple[Verdict, str]:
    """`incorrect` if any claim is false, `correct` if at least one holds and none is
    false (undecidable ones are noted), else `unknown`.

    The whole step gets max(budget_ms, timeout_ms); Z3 gets what is left of it.
    """
    deadline = time.monotonic() + max(budget_ms, timeout_ms) / 1000
    reading = read_claims(step_text, deadline)
    skipped = reading.skipped
    results: list[ClaimResult] = []
    for claim in reading.claims:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms < 1:
            skipped.append("not all checked: the step's time budget ran out")
            break
        results.append(check_claim(claim, rounding=rounding, timeout_ms=min(timeout_ms, left_ms)))
    wrong = [r.reason for r in results if r.verdict == "incorrect"]
    if wrong:
        return "incorrect", "; ".join(wrong)
    right = [r.summary or r.claim.text for r in results if r.verdict == "correct"]
    undecided = [r.reason for r in results if r.verdict == "unknown"] + skipped
    if not results:
        return "unknown", "; ".join(skipped) or "no arithmetic claim"
    if not right:
        return "unknown", "no decidable arithmetic claim: " + "; ".join(undecided)
    listed = "; ".join(right[:MAX_LISTED]) + ("; ..." if len(right) > MAX_LISTED else "")
    counted = f"{len(right)} arithmetic claim{' holds' if len(right) == 1 else 's hold'}"
    reason = f"{counted}: {listed}"
    if undecided:
        reason += f" (undecided: {'; '.join(undecided)})"
    return "correct", reason
