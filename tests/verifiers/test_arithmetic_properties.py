"""Property-based tests of the arithmetic checker (hypothesis).

* A true claim, however it is written (ASCII, unicode, LaTeX, prose and units around it),
  is never flagged `incorrect`; the same claim with a wrong result never holds.
* Random LaTeX, unicode text and bytes never raise and stay within the step's time budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmforge.verifiers.arithmetic import label_step
from rmforge.verifiers.arithmetic.limits import STEP_BUDGET_MS

# Each example is bounded by the step budget; the slack covers a loaded machine.
BOUNDED = settings(
    max_examples=150,
    deadline=STEP_BUDGET_MS + 2000,
    suppress_health_check=[HealthCheck.too_slow],
)
STYLES = ("ascii", "unicode", "latex")


@dataclass(frozen=True)
class Written:
    """An expression as some writer might put it, and its exact value."""

    text: str
    value: Fraction
    precedence: int  # 1: + -, 2: * /, 3: ^, 4: numbers and fractions


def _number(value: Fraction, style: str) -> str:
    if value.denominator == 1:
        text = f"{value.numerator:,}" if abs(value) >= 1000 and style != "latex" else str(value.numerator)
    else:
        text = str(float(value))  # only terminating decimals are drawn
    return f"({text})" if value < 0 else text


@st.composite
def literals(draw: st.DrawFn, style: str) -> Written:
    value = draw(
        st.one_of(
            st.integers(-20, 2000).map(Fraction),
            st.integers(1, 999).map(lambda n: Fraction(n, 10)),
            st.integers(1, 99).map(lambda n: Fraction(n, 4)),
        )
    )
    return Written(_number(value, style), value, 4)


def _wrap(written: Written, style: str) -> str:
    if style == "latex":
        return rf"\left( {written.text} \right)"
    return f"({written.text})"


def _operand(written: Written, style: str, at_least: int) -> str:
    return written.text if written.precedence >= at_least else _wrap(written, style)


def combine(op: str, left: Written, right: Written, style: str) -> Written | None:
    if op in "+-":
        value = left.value + right.value if op == "+" else left.value - right.value
        sign = {"ascii": op, "unicode": "−" if op == "-" else "+", "latex": op}[style]
        # The right operand of `-` needs brackets when it is a sum itself.
        text = f"{_operand(left, style, 1)} {sign} {_operand(right, style, 2 if op == '-' else 1)}"
        return Written(text, value, 1)
    if op == "*":
        sign = {"ascii": "*", "unicode": "×", "latex": r"\times"}[style]
        text = f"{_operand(left, style, 2)} {sign} {_operand(right, style, 3)}"
        return Written(text, left.value * right.value, 2)
    if op == "/":
        if right.value == 0:
            return None
        value = left.value / right.value
        if style == "latex":
            return Written(rf"\frac{{{left.text}}}{{{right.text}}}", value, 4)
        sign = {"ascii": "/", "unicode": "÷"}[style]
        return Written(f"{_operand(left, style, 2)} {sign} {_operand(right, style, 3)}", value, 2)
    exponent = int(right.value)
    if not (right.value.denominator == 1 and 0 <= exponent <= 3) or left.value == 0:
        return None
    base = _operand(left, style, 4) if left.value >= 0 else _wrap(left, style)
    text = f"{base}^{{{exponent}}}" if style == "latex" else f"{base}^{exponent}"
    return Written(text, left.value**exponent, 3)


@st.composite
def expressions(draw: st.DrawFn, style: str, depth: int = 3) -> Written:
    if depth == 0 or (depth < 3 and draw(st.booleans())):  # the top is an operation
        return draw(literals(style))
    op = draw(st.sampled_from("+-*/^"))
    left = draw(expressions(style, depth - 1))
    right = draw(literals(style)) if op == "^" else draw(expressions(style, depth - 1))
    combined = combine(op, left, right, style)
    return combined if combined is not None else left


def _result(value: Fraction, style: str) -> str:
    """The exact value as a writer would give it: integer, terminating decimal, fraction."""
    if value.denominator == 1:
        return _number(value, style).strip("()")
    for places in range(1, 13):  # a terminating decimal, written out exactly
        scaled = abs(value) * 10**places
        if scaled.denominator == 1:
            digits = str(scaled.numerator).rjust(places + 1, "0")
            return f"{'-' if value < 0 else ''}{digits[:-places]}.{digits[-places:]}"
    if style == "latex":
        sign = "-" if value < 0 else ""
        return rf"{sign}\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"
    return f"{value.numerator}/{value.denominator}"


def _in_context(claim: str, style: str, frame: int) -> str:
    if style == "latex":
        return [f"$${claim}$$", rf"So \[ {claim} \]", rf"Hence $\text{{Total}} = {claim}$."][frame]
    return [claim, f"So she has {claim} apples left.", f"Total cost = {claim} dollars."][frame]


@st.composite
def claims(draw: st.DrawFn) -> tuple[str, Written, int]:
    """(style, expression, context frame)."""
    style = draw(st.sampled_from(STYLES))
    return style, draw(expressions(style)), draw(st.integers(0, 2))


@pytest.mark.slow  # many Hypothesis examples
@BOUNDED
@given(claims())
def test_a_true_claim_is_never_flagged(drawn: tuple[str, Written, int]) -> None:
    style, expr, frame = drawn
    step = _in_context(f"{expr.text} = {_result(expr.value, style)}", style, frame)
    verdict, reason = label_step(step)
    assert verdict != "incorrect", (step, reason)


@pytest.mark.slow  # many Hypothesis examples
@BOUNDED
@given(claims(), st.sampled_from([1, -1, 2, 10, Fraction(1, 2)]))
def test_a_wrong_result_never_holds(drawn: tuple[str, Written, int], delta: Fraction) -> None:
    style, expr, frame = drawn
    wrong = expr.value + delta
    step = _in_context(f"{expr.text} = {_result(wrong, style)}", style, frame)
    verdict, reason = label_step(step)
    assert verdict in ("incorrect", "unknown"), (step, reason)


@st.composite
def percent_claims(draw: st.DrawFn) -> str:
    """GSM8K-style percentages with money and units, all true."""
    percent = draw(st.integers(1, 200))
    amount = draw(st.integers(1, 5000))
    part, whole = draw(st.integers(0, 500)), draw(st.integers(1, 500))
    share = Fraction(part, whole) * 100
    templates = [
        f"She saves {percent}% of ${amount:,} = ${_result(Fraction(percent * amount, 100), 'ascii')}.",
        rf"The tip is ${percent}\%$ of $\${amount}$, so $\frac{{{percent}}}{{100}} \times {amount} = {_result(Fraction(percent * amount, 100), 'latex')}$.",
        f"The share is ({part} / {whole}) * 100 = {_result(share, 'ascii')}%.",
        f"That is {part}/{whole} = {_result(share / 100, 'ascii')} = {_result(share, 'ascii')}%.",
        f"After a {percent}% raise: {amount} * (1 + {percent}/100) = {_result(amount * (1 + Fraction(percent, 100)), 'ascii')} dollars.",
    ]
    return draw(st.sampled_from(templates))


@BOUNDED
@given(percent_claims())
def test_a_true_percentage_is_never_flagged(step: str) -> None:
    verdict, reason = label_step(step)
    assert verdict != "incorrect", (step, reason)


LATEX_PIECES = st.sampled_from(
    [r"\frac{", r"\dfrac", r"\sqrt{", r"\sqrt[3]{", "{", "}", "(", ")", "[", "]", r"\left(",
     r"\right)", r"\times", r"\cdot", r"\div", "^", "_", "=", "+", "-", "*", "/", "%", r"\%",
     r"\text{ apples}", r"\boxed{", r"\pi", r"\approx", r"\cdots", r"\overline{3}", r"\[", r"\]",
     "$", "$$", ",", ".", "...", " ", "\n", "x", "2", "3.5", "1,000", "0.", "½", "√", "²", "−",
     "×", "<<", ">>", "!", r"\\", "\\"]
)  # fmt: skip


@BOUNDED
@given(st.lists(st.one_of(LATEX_PIECES, st.integers(0, 10**6).map(str)), max_size=80).map("".join))
def test_random_latex_is_read_without_error(text: str) -> None:
    _assert_bounded(text)


@BOUNDED
@given(st.text(max_size=400))
def test_random_unicode_is_read_without_error(text: str) -> None:
    _assert_bounded(text)


@BOUNDED
@given(st.binary(max_size=400))
def test_random_bytes_are_read_without_error(data: bytes) -> None:
    _assert_bounded(data.decode("utf-8", errors="replace"))
    _assert_bounded(data.decode("latin-1"))


def _assert_bounded(text: str) -> None:
    started = time.monotonic()
    verdict, reason = label_step(text)
    assert verdict in ("correct", "incorrect", "unknown") and reason
    assert time.monotonic() - started < STEP_BUDGET_MS / 1000 + 2
