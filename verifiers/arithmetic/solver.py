"""Z3 over the reals for equalities between irrational radicals, with a deadline."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from typing import Any

from rmforge.verifiers.arithmetic.expr import BinOp, Expr, Irrational, Neg, Num, Root, Undecidable, Verdict
from rmforge.verifiers.arithmetic.limits import MAX_ROOT_INDEX, MAX_Z3_POWER
from rmforge.verifiers.arithmetic.values import RING_OPS, exact_value

_Z3_LOCAL = threading.local()


class Z3Builder:
    """Real-valued Z3 terms for expressions with irrational roots: each root is a fresh
    variable r with r^k = arg (and r >= 0 for even k). All checks share one deadline."""

    def __init__(self, z3: Any, timeout_ms: int) -> None:
        # Z3 is thread-safe only with one context per thread.
        if not hasattr(_Z3_LOCAL, "context"):
            _Z3_LOCAL.context = z3.Context()
        self.z3, self.ctx, self.count = z3, _Z3_LOCAL.context, 0
        self.solver = z3.Solver(ctx=self.ctx)
        self.deadline = time.monotonic() + timeout_ms / 1000

    def check(self, condition: Any) -> Any:
        """sat / unsat / unknown for the facts so far plus `condition`."""
        left_ms = int((self.deadline - time.monotonic()) * 1000)
        if left_ms < 1:
            return self.z3.unknown
        self.solver.set("timeout", left_ms)
        self.solver.push()
        self.solver.add(condition)
        try:
            return self.solver.check()
        finally:
            self.solver.pop()

    def real(self, v: Fraction) -> Any:
        return self.z3.RealVal(f"{v.numerator}/{v.denominator}", self.ctx)

    def build(self, e: Expr) -> Any:
        try:
            return self.real(exact_value(e))  # rational subterms stay exact constants
        except Irrational:
            pass
        if isinstance(e, Neg):
            return -self.build(e.operand)
        if isinstance(e, Root):
            return self.root(e.operand, e.index)
        assert isinstance(e, BinOp)
        if e.op == "^":
            return self.power(e)
        a, b = self.build(e.left), self.build(e.right)
        if e.op in RING_OPS:
            return RING_OPS[e.op](a, b)
        self.require(b != 0, "division by zero")
        return a / b

    def root(self, operand: Expr | Any, k: int) -> Any:
        if k > MAX_ROOT_INDEX:
            raise Undecidable("root index too large")
        if isinstance(operand, (Num, Neg, BinOp, Root)):
            try:
                v = exact_value(operand)
                if v < 0 and k % 2 == 0:
                    raise Undecidable("even root of a negative number")
                arg = self.real(v)
            except Irrational:
                arg = self.build(operand)
                if k % 2 == 0:
                    self.require(arg >= 0, "even root of a negative number")
        else:
            arg = operand
            if k % 2 == 0:
                self.require(arg >= 0, "even root of a negative number")
        self.count += 1
        r = self.z3.Real(f"root{self.count}", self.ctx)
        self.solver.add(_zpow(r, k) == arg)
        if k % 2 == 0:
            self.solver.add(r >= 0)
        return r

    def power(self, e: BinOp) -> Any:
        try:
            exponent = exact_value(e.right)
        except Irrational:
            raise Undecidable("irrational exponent") from None
        p, q = exponent.numerator, exponent.denominator
        if abs(p) > MAX_Z3_POWER:
            raise Undecidable("exponent too large")
        base = self.build(e.left)
        if p == 0:
            return self.real(Fraction(1))
        value = _zpow(base, abs(p))
        if p < 0:
            self.require(base != 0, "division by zero")
            value = 1 / value
        return value if q == 1 else self.root(value, q)

    def require(self, condition: Any, why: str) -> None:
        result = self.check(self.z3.Not(condition))
        if result != self.z3.unsat:
            raise Undecidable(why if result == self.z3.sat else "solver gave up")


def _zpow(x: Any, n: int) -> Any:
    result = x
    for _ in range(n - 1):
        result = result * x
    return result


def compare_z3(a: Expr, b: Expr, tol: Fraction | None, timeout_ms: int) -> tuple[Verdict, str]:
    import z3  # only irrational radicals need it; keeps the common path import-free

    builder = Z3Builder(z3, timeout_ms)
    za, zb = builder.build(a), builder.build(b)
    result = builder.check(za != zb)
    if result == z3.unsat:
        return "correct", ""
    if result == z3.sat and tol is not None:
        t = builder.real(tol)
        result = builder.check(z3.Or(za - zb > t, zb - za > t))
        if result == z3.unsat:
            return "correct", " (rounded)"
    if result != z3.sat:
        raise Undecidable("solver gave up")
    return "incorrect", ""
