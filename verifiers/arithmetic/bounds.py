"""Rigorous rational bounds for expressions with irrational roots.

Irrational values are bracketed by rigorous rational bounds first: that settles
`\\sqrt{2} = 1.414` and `\\sqrt{2} = 1.5` at once. Only when the bounds cannot separate
the sides (they may be exactly equal: `\\sqrt{8} = 2\\sqrt{2}`) does Z3 decide.
"""

from __future__ import annotations

from fractions import Fraction

from rmforge.verifiers.arithmetic.expr import BinOp, Expr, Irrational, Neg, Num, Root, Undecidable, Verdict
from rmforge.verifiers.arithmetic.limits import MAX_RESULT_BITS, MAX_ROOT_INDEX, MAX_Z3_POWER
from rmforge.verifiers.arithmetic.values import bits, exact_value, iroot_floor

_ROOT_SCALE = 1 << 100  # root bounds are within 2^-100
# A decimal operand written to this many places or more is taken as a rounded value
# (`(2.8284)^2 = 8`, 2.8284 for √8); amounts of money and percentages have fewer.
ROUNDED_PLACES = 3


class Loose(Exception):
    """Bounds cannot decide; ask Z3."""


Bounds = tuple[Fraction, Fraction]


def _root_floor(v: Fraction, k: int) -> Fraction:
    """A lower bound of v^(1/k) (v >= 0) within 2^-100."""
    scaled = v.numerator * _ROOT_SCALE**k // v.denominator
    return Fraction(iroot_floor(scaled, k), _ROOT_SCALE)


def _root_bounds(lo: Fraction, hi: Fraction, k: int) -> Bounds:
    if k > MAX_ROOT_INDEX:
        raise Undecidable("root index too large")
    if k % 2 == 0 and hi < 0:
        raise Undecidable("even root of a negative number")
    if lo < 0:
        if k % 2 == 0:
            raise Loose  # the argument may be negative: Z3 checks
        # Odd roots are increasing and odd: bracket -root(-x) from the other side.
        upper = -_root_floor(-lo, k) if hi < 0 else _root_floor(hi, k) + Fraction(1, _ROOT_SCALE)
        return -_root_floor(-lo, k) - Fraction(1, _ROOT_SCALE), upper
    return _root_floor(lo, k), _root_floor(hi, k) + Fraction(1, _ROOT_SCALE)


def _pow_bounds(lo: Fraction, hi: Fraction, n: int) -> Bounds:
    if n < 0:
        if lo <= 0 <= hi:
            raise Loose
        lo, hi = _pow_bounds(lo, hi, -n)
        return 1 / hi, 1 / lo
    if max(bits(lo), bits(hi)) * n > MAX_RESULT_BITS:
        raise Undecidable("result too large")
    ends = sorted((lo**n, hi**n))
    if n % 2 == 0 and lo < 0 < hi:
        return Fraction(0), ends[1]
    return ends[0], ends[1]


def has_rounded_operand(e: Expr) -> bool:
    """Whether a computation uses a decimal written to `ROUNDED_PLACES` or more."""
    if isinstance(e, Num):
        return False
    if isinstance(e, (Neg, Root)):
        return has_rounded_operand(e.operand) or _is_rounded(e.operand)
    return any(has_rounded_operand(side) or _is_rounded(side) for side in (e.left, e.right))


def _is_rounded(e: Expr) -> bool:
    return isinstance(e, Num) and e.decimals >= ROUNDED_PLACES


def _bounds(e: Expr, rounded: bool = False) -> Bounds:
    """Rigorous lower and upper bounds of an expression's value; with `rounded`, of every
    value it may stand for when its rounded decimals (`_is_rounded`) are off by up to half
    a unit in their last place."""
    if rounded and _is_rounded(e):
        assert isinstance(e, Num)
        half = Fraction(1, 2 * 10**e.decimals) / (100 if e.percent else 1)
        return e.value - half, e.value + half
    if not (rounded and has_rounded_operand(e)):
        try:
            v = exact_value(e)
            return v, v
        except Irrational:
            pass
    if isinstance(e, Neg):
        lo, hi = _bounds(e.operand, rounded)
        return -hi, -lo
    if isinstance(e, Root):
        return _root_bounds(*_bounds(e.operand, rounded), e.index)
    assert isinstance(e, BinOp)
    if e.op == "^":
        try:
            exponent = exact_value(e.right)
        except Irrational:
            raise Undecidable("irrational exponent") from None
        if abs(exponent.numerator) > MAX_Z3_POWER:
            raise Loose
        lo, hi = _pow_bounds(*_bounds(e.left, rounded), exponent.numerator)
        return (lo, hi) if exponent.denominator == 1 else _root_bounds(lo, hi, exponent.denominator)
    (a, b), (c, d) = _bounds(e.left, rounded), _bounds(e.right, rounded)
    if max(map(bits, (a, b))) + max(map(bits, (c, d))) > MAX_RESULT_BITS:
        raise Undecidable("result too large")
    if e.op == "+":
        return a + c, b + d
    if e.op == "-":
        return a - d, b - c
    if e.op == "/":
        if c <= 0 <= d:
            raise Loose  # the divisor may be zero
        c, d = 1 / d, 1 / c
    products = (a * c, a * d, b * c, b * d)
    return min(products), max(products)


def may_be_rounding(a: Expr, b: Expr, tol: Fraction | None) -> bool:
    """Whether a == b may hold up to the rounding of the decimals they compute with
    (`(2.8284)^2 = 8`): only a gap no such rounding explains shows a slip."""
    try:
        (a_lo, a_hi), (b_lo, b_hi) = _bounds(a, True), _bounds(b, True)
    except (Loose, Undecidable):
        return True  # the sides cannot be told apart
    margin = tol or Fraction(0)
    return a_lo - b_hi <= margin and b_lo - a_hi <= margin


def compare_bounds(a: Expr, b: Expr, tol: Fraction | None) -> tuple[Verdict, str]:
    (a_lo, a_hi), (b_lo, b_hi) = _bounds(a), _bounds(b)
    low, high = a_lo - b_hi, a_hi - b_lo  # a - b lies in [low, high]
    margin = tol or Fraction(0)
    if tol is not None and -tol <= low and high <= tol:
        return "correct", " (rounded)"
    if low > margin or high < -margin:
        return "incorrect", ""
    raise Loose
