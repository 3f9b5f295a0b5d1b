"""Expression trees, claims and the verdicts the checker gives them."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Verdict = Literal["correct", "incorrect", "unknown"]


@dataclass(frozen=True, slots=True)
class Num:
    """A number as written: `1,250`, `$1.50` (decimals=2), `25%` (value 1/4, percent),
    `3.363...` (truncated: the digits shown are a prefix of the value)."""

    value: Fraction
    decimals: int = 0
    percent: bool = False
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # one of + - * / ^
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Root:
    index: int
    operand: Expr


Expr = Num | Neg | BinOp | Root
ClaimSource = Literal["text", "gsm8k"]


@dataclass(frozen=True)
class Claim:
    """One `lhs = rhs` equality found in a step (texts as normalised, units kept)."""

    lhs_text: str
    rhs_text: str
    lhs: Expr
    rhs: Expr
    source: ClaimSource = "text"
    # The right side's first number, where the chain may be a running total.
    running_lead: Num | None = None
    lhs_units: frozenset[str] = frozenset()
    rhs_units: frozenset[str] = frozenset()
    # Why this reading may not be what the writer meant; a doubtful claim never refutes.
    doubt: str = ""
    # The step speaks of rounding or approximation (`about`, `≈`, `round`, `remainder`).
    approximate: bool = False
    # The step speaks of what remains (`with 90 degrees remaining`, `left over`).
    remainder: bool = False

    @property
    def text(self) -> str:
        return f"{self.lhs_text} = {self.rhs_text}"


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: Verdict
    reason: str
    summary: str = ""  # short form for a step's reason: "10 / 3 = 3.33 (rounded)"


class Undecidable(Exception):
    """The claim cannot be decided (division by zero, huge power, solver gave up)."""


class Irrational(Exception):
    """A root is not rational: the exact check needs Z3."""


class NoParse(Exception):
    pass


def canon(e: Expr) -> str:
    """The expression's structure and values, regardless of how numbers were written."""
    if isinstance(e, Num):
        return str(e.value)
    if isinstance(e, Neg):
        return f"(-{canon(e.operand)})"
    if isinstance(e, Root):
        return f"root{e.index}({canon(e.operand)})"
    return f"({canon(e.left)}{e.op}{canon(e.right)})"


def has_op(e: Expr) -> bool:
    if isinstance(e, Neg):
        return has_op(e.operand)
    return isinstance(e, (BinOp, Root))


def is_literal(e: Expr) -> bool:
    return isinstance(e, Num) or (isinstance(e, Neg) and isinstance(e.operand, Num))


def leading_number(e: Expr) -> Num | None:
    """The first number of `8 + 2` (a running total writes the previous result first)."""
    if not (isinstance(e, BinOp) and e.op in "+-*/"):
        return None
    while isinstance(e, BinOp) and e.op in "+-*/":
        e = e.left
    return e if isinstance(e, Num) else None
