"""Exact rational values of expressions, and how to show them in reasons."""

from __future__ import annotations

import math
import operator
from dataclasses import replace
from fractions import Fraction

from rmforge.verifiers.arithmetic.expr import BinOp, Expr, Irrational, Neg, Num, Root, Undecidable
from rmforge.verifiers.arithmetic.limits import MAX_EXPONENT, MAX_RESULT_BITS, MAX_ROOT_INDEX


def iroot_floor(n: int, k: int) -> int:
    """floor(n ** (1/k)) for an integer n >= 0, exactly."""
    if n < 2:
        return n
    if k == 2:
        return math.isqrt(n)
    x = 1 << -(-n.bit_length() // k)  # >= the root; Newton's method descends from above
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _iroot(n: int, k: int) -> int | None:
    """The exact k-th root of n >= 0, or None."""
    r = iroot_floor(n, k)
    return r if r**k == n else None


def _root(v: Fraction, k: int) -> Fraction:
    if k > MAX_ROOT_INDEX:
        raise Undecidable("root index too large")
    if v < 0:
        if k % 2 == 0:
            raise Undecidable("even root of a negative number")
        return -_root(-v, k)
    num, den = _iroot(v.numerator, k), _iroot(v.denominator, k)
    if num is None or den is None:
        raise Irrational
    return Fraction(num, den)


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    n = exponent.numerator
    if abs(n) > MAX_EXPONENT:
        raise Undecidable("exponent too large")
    if base == 0 and n < 0:
        raise Undecidable("division by zero")
    size = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(n)
    if size > MAX_RESULT_BITS:
        raise Undecidable("result too large")
    value = base**n
    return value if exponent.denominator == 1 else _root(value, exponent.denominator)


# One dispatch for + - * shared by the exact, float and Z3 evaluators.
RING_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def exact_value(e: Expr) -> Fraction:
    """Exact value; raises Irrational (needs Z3) or Undecidable."""
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Neg):
        return -exact_value(e.operand)
    if isinstance(e, Root):
        return _root(exact_value(e.operand), e.index)
    a, b = exact_value(e.left), exact_value(e.right)
    if e.op != "^" and bits(a) + bits(b) > MAX_RESULT_BITS:
        raise Undecidable("result too large")
    if e.op in RING_OPS:
        if e.op != "*":
            _check_percent_sum(e)
        return RING_OPS[e.op](a, b)
    if e.op == "/":
        if b == 0:
            raise Undecidable("division by zero")
        return a / b
    return _power(a, b)


def bits(v: Fraction) -> int:
    return max(v.numerator.bit_length(), v.denominator.bit_length())


def _check_percent_sum(e: BinOp) -> None:
    # "$50 + 8% = $54" means 50 * 1.08, not 50.08: too ambiguous to call either way.
    left = isinstance(e.left, Num) and e.left.percent
    right = isinstance(e.right, Num) and e.right.percent
    if left != right:
        raise Undecidable("adds a percentage to a plain number")


def tolerance(e: Expr, approximate: bool = False) -> Fraction | None:
    """How far a bare literal may be from the exact value: half a unit in its last
    written decimal place (`3.33`), a whole unit when it is truncated (`3.363...`) or an
    integer in a step that says it rounds (`36 / 5 = 7`, "with a remainder of 1");
    None for exact integers."""
    if isinstance(e, Neg):
        e = e.operand
    if not isinstance(e, Num):
        return None
    unit = Fraction(1, 10**e.decimals)
    if e.truncated or (approximate and e.decimals == 0):
        tol = unit
    elif e.decimals > 0:
        tol = unit / 2
    else:
        return None
    return tol / 100 if e.percent else tol


def plain_percent(e: Expr) -> Expr:
    """The expression with every `x%` read as the number x (`0.2 * 100 = 20%`)."""
    if isinstance(e, Num):
        return replace(e, value=e.value * 100, percent=False) if e.percent else e
    if isinstance(e, Neg):
        return Neg(plain_percent(e.operand))
    if isinstance(e, Root):
        return Root(e.index, plain_percent(e.operand))
    return BinOp(e.op, plain_percent(e.left), plain_percent(e.right))


def has_percent(e: Expr) -> bool:
    if isinstance(e, Num):
        return e.percent
    if isinstance(e, (Neg, Root)):
        return has_percent(e.operand)
    return has_percent(e.left) or has_percent(e.right)


def approx(e: Expr) -> float:
    try:
        if isinstance(e, Num):
            return float(e.value)
        if isinstance(e, Neg):
            return -approx(e.operand)
        if isinstance(e, Root):
            v = approx(e.operand)
            return math.copysign(abs(v) ** (1 / e.index), v)
        a, b = approx(e.left), approx(e.right)
        if e.op in RING_OPS:
            return RING_OPS[e.op](a, b)
        value = a / b if e.op == "/" else a**b
        return value if isinstance(value, float) else math.nan  # (-8) ** (1/3) is complex
    except (OverflowError, ZeroDivisionError, ValueError):
        return math.nan


def fmt(v: Fraction) -> str:
    if max(v.numerator.bit_length(), v.denominator.bit_length()) > 130:
        return f"a number of about {_magnitude(v)}"
    if v.denominator == 1:
        return str(v.numerator)
    d, twos, fives = v.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    places = max(twos, fives)
    if d == 1 and places <= 12:
        digits = str(abs(v.numerator) * 10**places // v.denominator).rjust(places + 1, "0")
        return f"{'-' if v < 0 else ''}{digits[:-places]}.{digits[-places:]}"
    return f"{v.numerator}/{v.denominator} (≈ {float(v):.6g})"


def _magnitude(v: Fraction) -> str:
    """`1e+300`-style size of a huge or tiny rational, without overflowing a float."""
    if v == 0:
        return "0"
    exponent = math.log10(abs(v.numerator)) - math.log10(v.denominator)
    return f"{'-' if v < 0 else ''}1e{math.floor(exponent):+d}"


def show(e: Expr) -> str:
    """`= 84`, `≈ 1.41421` (the value of a side, for reasons)."""
    try:
        return f"= {fmt(exact_value(e))}"
    except Irrational:
        rough = approx(e)
        return f"≈ {rough:.6g}" if math.isfinite(rough) else "is too large to approximate"
    except Undecidable as exc:
        return f"is undefined ({exc})"
