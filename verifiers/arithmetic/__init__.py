"""Check the explicit arithmetic claims in a step of a solution (`16 - 3 - 4 = 9`).

A refute-only checker: `incorrect` means a claim is false under every reasonable reading;
`correct` only means no false claim was found. A false `incorrect` costs far more than a
missed one, so whenever the reading is in doubt the claim is `unknown`.

A small tokenizer and recursive-descent parser find equalities between numeric
expressions in messy model output: units and currency beside numbers (`9 * $2 = $18`,
`60 minutes/hour * 2 hours = 120 minutes`), `x`/`×`/`÷`/`^`, thousands separators,
percentages (`25% of 80`, `\\%`), LaTeX (`\\frac{3}{4} \\times 20`, `\\text{}`), GSM8K
calculator annotations (`<<16-3=13>>13`). Both sides are evaluated with exact rationals
(`fractions.Fraction`). Radicals that are not exact (`\\sqrt{2}`) are bracketed by
rigorous rational bounds, which settle roundings and inequalities; equalities the bounds
cannot separate (`\\sqrt{8} = 2\\sqrt{2}`) go to Z3 over the reals, with a timeout.

Not claims: anything with a variable (`x = 5`, `2x + 3 = 11`, `f(3) = 9`), constants,
functions and multiplier words (`\\pi`, `log`, `5!`, `\\binom`, `squared`, `twice`), dates,
clock times, ratios, inequalities, `≈`, elided terms (`1 + 2 + \\cdots + 10`), repeating
decimals (`0.\\overline{3}`), decimal commas (`3,5`), and equalities between two bare
numbers (`1 hour = 60 minutes`, `25% = 0.25`), which are usually unit conversions. So
algebra is never counted as wrong arithmetic.

Reading chains (`a = b = c`) as a careful reader would:
* a claim is the expression chain only: a number inside the prose before it is a label,
  not an operand (`Time to heat up to 400 degrees = 20 + 8`, `Dogs - 2 = 9 - 2 = 7`);
  display math (`\\[ ... \\]`, `$$`, `\\begin{align}`) stands on its own lines, and a line
  that starts with `=` continues the one before;
* every `=` compares the expressions on either side of it;
* running totals: when `a = b` fails but `b` starts with the value of `a` and goes on
  computing (`4 + 4 = 8 + 2 = 10`, `2 hours = 2 * 60 minutes`), the pair holds and `b`
  is then checked against `c`. This applies only when `b` is followed by another side
  or `a` is a bare number, where the strict reading is clearly not what was meant;
* a side that starts with `+`, `*` or `/` (`= 8 = * 2 = 16`) continues the value of the
  side before it. A leading `-` is read as a negative number (ambiguous otherwise);
* a restatement right after a definition is checked against it:
  `\\[ \\text{Total} = 52 + 24 \\] \\[ \\text{Total} = 78 \\]` claims 52 + 24 = 78 (false).

Not the writer's claims (false ones are `unknown`): an equation in a step that rejects
one (`10 = 4, which is false`, `does not work`, `(False)`, `contradiction`, `≠`), one
asked (`Does 2+1=4?`) or supposed (`if 3 + 4 = 8`). Not read as numbers: an operand
beside notation the checker does not evaluate (`f''(-4)`, `!5`, `5!`, `\\frac{1}{2}ab`),
terms around an ellipsis that elides (`\\frac{3}{2} \\cdots \\frac{100}{99}`); prose words
(`and`, `to`, `which`, ...) end a side, so claims are not stitched across them
(`\\(BD = \\frac{31}{2}\\) and \\(AC = 22\\)`).

GSM8K calculator annotations (`<<18-36=-18>>-18`) are read as calculator input (a `-` is a
minus); the result shown after one is the writer's claim too (`<<35*500=17500>>17400` is
false), with thousands grouped by spaces (`17 500`) and a sign dropped in words
(`<<18-36=-18>>18 less`) or a rounding of a fractional result (`<<100/3=33.33>>33`) allowed.

Rounding and approximation: a decimal holds within half a unit of its last written
place (`10 / 3 = 3.33`; `10 / 3 = 3` does not), a truncated one (`3.363...`) within a
whole unit; a decimal that is the value cut short rather than rounded (`2/3 = 0.66`) is
`unknown`. When the step speaks of approximating (`about`, `roughly`, `≈`, `round up`,
`remainder`), an integer holds within one unit (`36 / 5 = 7 full pens`), and one within a
tenth of the value is `unknown` rather than false. A percentage is also read as a plain
number (`0.2 * 100 = 20%`). A division's whole quotient holds when the step speaks of
what remains (`2250 / 360 = 6 ... 90 degrees remaining`); a computation with a decimal of
3+ places (`(2.8284)^2 = 8`) is `unknown` when that decimal's rounding explains the gap.

Unknown, never incorrect: division by zero, huge powers, `$50 + 8%` (50 * 1.08 or
50.08?), unit conversions and scales (`2 * 60 minutes = 2 hours`, `1/2 inch = 20 miles`),
and doubtful readings: a dash
that may be a minus (`Eggs left - 16 - 3 = 9`), a range (`pages 10-20 = 11`), a
hyphenated mixed number (`3-1/2`), `-3^2`, `2^3^2`, `6/2(3)`, `200/3%`, a share of a
quantity (`1/4 of the oranges = ...`), a scale word (`1.2 million * 2`), a sum of
different units (`4 quarters + 3 dimes`), a bare number whose unit differs from the
other side (`48 hours = 2400 quarts + 600 quarts`).

Bounds (`limits.py`): every call is bounded in time and memory whatever the input; an
exceeded bound gives `unknown` with the reason.
* a step longer than 20,000 characters, one holding a number of more than 100 digits, or
  brackets/braces nested deeper than 100 is not read;
* a clause (text between sentence breaks) of more than 400 tokens is not read; a claim's
  left side starts at most 64 tokens before its `=`; parser nesting is at most 64;
* exponents beyond 1000 (64 for irrational bases), root indices beyond 64, and values
  beyond 100,000 bits (about 30,000 digits) are not computed;
* Z3 gets `timeout_ms` (default 2 s) per claim, and a whole step gets
  max(5 s, `timeout_ms`), Z3 included; claims left when it runs out are not checked.
Measured on an AMD EPYC (2 cores, AVX2, shared; load average 13): the 2,082 steps of
ProcessBench's 400 GSM8K solutions in 2.5 s (1.2 ms a step, slowest 21 ms); each
adversarial input of `tests/verifiers` (2,000-deep `\\frac`, a 100,000-digit `\\boxed{}`,
200 KB of text, 5,000 nested brackets, huge powers) in under 0.2 s, peak RSS 19 MB; a
step of claims only Z3 could settle stops at its budget (5 s).
"""

from rmforge.verifiers.arithmetic.check import check_claim, label_step
from rmforge.verifiers.arithmetic.claims import find_claims
from rmforge.verifiers.arithmetic.expr import BinOp, Claim, ClaimResult, Expr, Neg, Num, Root, Verdict
from rmforge.verifiers.arithmetic.limits import DEFAULT_TIMEOUT_MS

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
