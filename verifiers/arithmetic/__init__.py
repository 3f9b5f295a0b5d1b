"""Check the explicit arithmetic claims in a step of a solution (`16 - 3 - 4 = 9`).

A small tokenizer and recursive-descent parser find equalities between numeric
expressions in messy model output: units and currency beside numbers (`9 * $2 = $18`,
`60 minutes/hour * 2 hours = 120 minutes`), `x`/`×`/`÷`/`^`, thousands separators,
percentages (`25% of 80`), LaTeX (`\\frac{3}{4} \\times 20`), GSM8K calculator
annotations (`<<16-3=13>>13`). Both sides are evaluated with exact rationals
(`fractions.Fraction`). Radicals that are not exact (`\\sqrt{2}`) are bracketed by
rigorous rational bounds, which settle roundings and inequalities; equalities the bounds
cannot separate (`\\sqrt{8} = 2\\sqrt{2}`) go to Z3 over the reals, with a timeout.

Not claims: anything with a variable (`x = 5`, `2x + 3 = 11`, `f(3) = 9`), dates, clock
times, ratios, inequalities, `≈`, and equalities between two bare numbers (`1 hour = 60
minutes`, `25% = 0.25`), which are usually unit conversions. So algebra is never counted
as wrong arithmetic. Claims that cannot be decided (division by zero, huge powers,
`$50 + 8%`, which may mean 50 * 1.08) are `unknown`, never `incorrect`.

Reading chains (`a = b = c`):
* every `=` compares the expressions on either side of it;
* running totals: when `a = b` fails but `b` starts with the value of `a` and goes on
  computing (`4 + 4 = 8 + 2 = 10`, `2 hours = 2 * 60 minutes`), the pair holds and `b`
  is then checked against `c`. This applies only when `b` is followed by another side
  or `a` is a bare number, where the strict reading is clearly not what was meant;
* a side that starts with `+`, `*` or `/` (`= 8 = * 2 = 16`) continues the value of the
  side before it. A leading `-` is read as a negative number (ambiguous otherwise).

A side that is a rounded decimal of the other's exact value holds when it is within half
a unit of its last written decimal place (`10 / 3 = 3.33`); `10 / 3 = 3` does not.
"""

from verifiers.arithmetic.check import check_claim, label_step
from verifiers.arithmetic.claims import find_claims
from verifiers.arithmetic.expr import BinOp, Claim, ClaimResult, Expr, Neg, Num, Root, Verdict
from verifiers.arithmetic.limits import DEFAULT_TIMEOUT_MS

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "BinOp",
    "Claim",
    "ClaimResult",
    "Expr",
    "Neg",
    "Num",
    "Root",
    "Verdict",
    "check_claim",
    "find_claims",
    "label_step",
]
