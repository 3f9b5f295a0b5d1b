"""Final-answer checker: is the answer a response ends with equivalent to the gold?

Equivalence is decided by `math-verify` (sympy-backed: 1/2 = 0.5, sqrt(8) = 2 sqrt(2),
(1,3] as an interval, {1,2} = {2,1}, x = 3 ~ 3, ...), never by a bare string match.
Logic problems (gold True / False / Uncertain) and word answers ("Sunday") compare
case-insensitively after normalisation instead, because sympy would read a word as a
product of symbols ("True" -> E*r*t*u).

Verdict standards (shared by every annotator that grades answers). A verdict is a
claim about the response, so the checker claims only what it saw:

* "unknown" whenever there is no gold answer, whatever the response (even truncated):
  without a gold nothing about correctness is decided.
* "incorrect": a truncated response (finish_reason == "length"), even with a boxed
  answer; an empty response; an answer not equivalent to the gold.
* A finished response with no answer marker is read the way a human grader reads it:
  when the gold is a number, the number its last sentence asserts as the result
  ("So, it took James 2 hours.") is graded (`prose_answer`). When there is none (the
  last sentence announces, asks, hedges or names several numbers), the answer is
  missing: "unknown" ("no final answer found"), or "incorrect" for callers whose
  prompt demanded a marked answer (`missing_answer="incorrect"`).
* "unknown" also when the checker cannot decide: a gold or an answer that cannot be
  parsed (prose math-verify cannot read is no wrong answer), an answer in words that
  names several numbers, none of them the one-number gold ("4 blue and 6 red boxes" for
  10: whether their sum answers is a judgement, not a check), a timeout / memory / exception
  inside math-verify, or an input past one of the bounds below.

Bounds (every call is bounded in time and memory, whatever the text):

* Only the last `MAX_SCAN_CHARS` characters of a response are searched for an answer
  (answers come last); every regex over that text is linear-time. A longer response
  with no answer in that tail is `unknown`, not `incorrect`.
* Plain numbers (optionally signed, at most 6 decimals, after unicode digits are
  mapped to ASCII) are compared exactly in-process, at any length: the fast path
  Monte Carlo grading takes thousands of times. math-verify rounds to 6 decimals, so
  the fast path agrees with it wherever it applies.
* Anything else longer than `MAX_ANSWER_CHARS` is `unknown` ("answer too long").
* math-verify runs in a worker subprocess (`verifiers.bounded`) killed after
  `timeout_s` of wall time, with a `WORKER_MEMORY_MB` address-space limit, so the
  bound holds in any thread and for C-level work (`9^{9^{9^9}}`, `100000!`).

Percentages: math-verify reads "25%" as 0.25 (only integer 25% = 25 is special-cased),
so "12.5%" would not match a gold "12.5". GSM8K-style graders count a trailing percent
sign as decoration, so both sides are compared with the percent sign stripped, and
(when either side had one) also as written, so "25%" also matches a gold "0.25".
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from rmforge.schemas.records import Verdict
from rmforge.verifiers.answer_text import (
    MAX_ANSWER_CHARS,
    MAX_SCAN_CHARS,
    PLAIN_NUMBER_RE,
    extract_final_answer,
    normalise_text,
    prepare_math,
    word_answer,
)
from rmforge.verifiers.bounded import BoundedPool, CheckFailed, CheckTimeout
from rmforge.verifiers.prose_answer import is_numeric_gold, names_several_numbers, prose_answer

UNPARSEABLE_ANSWER = "unparseable answer"
WORKER_MEMORY_MB = 2_048


@dataclass(frozen=True, slots=True)
class GradeResult:
    verdict: Verdict
    predicted: str | None
    reason: str


# ------------------------------------------------------------------------- math-verify


def _compare_plain_numbers(gold: tuple[str, bool], predicted: tuple[str, bool]) -> bool | None:
    """Exact comparison when both sides are plain numbers; None when math-verify must decide."""
    (gold_text, gold_pct), (pred_text, pred_pct) = gold, predicted
    if not (PLAIN_NUMBER_RE.fullmatch(gold_text) and PLAIN_NUMBER_RE.fullmatch(pred_text)):
        return None
    gold_value, pred_value = Decimal(gold_text), Decimal(pred_text)
    if gold_value == pred_value:
        return True
    # As written, "25%" is 0.25 (see the module docstring).
    return (gold_value / 100 if gold_pct else gold_value) == (pred_value / 100 if pred_pct else pred_value)


@lru_cache(maxsize=16384)
def _parse(text: str) -> tuple[object, ...]:
    """Parsed forms of one normalised answer (gold or predicted); () when unparseable.

    Runs inside the bounded worker, where it is cached: the same gold is parsed once
    per worker, not once per completion. No math-verify timeout: the worker is the bound.
    """
    from math_verify import parse

    # `\boxed{}` makes math-verify take the whole answer as one LaTeX expression;
    # plain numbers parse the same way.
    parsed = parse(
        "\\boxed{" + text + "}",
        extraction_config=_extraction_config(),
        parsing_timeout=None,  # the worker's deadline bounds it
        raise_on_error=True,
    )
    return tuple(parsed)


@lru_cache(maxsize=1)
def _extraction_config() -> tuple[object, ...]:
    # One shared instance: math-verify caches its compiled regexes per config object.
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return (LatexExtractionConfig(), ExprExtractionConfig())


def _equivalent(gold: tuple[object, ...], predicted: tuple[object, ...]) -> bool:
    from math_verify import verify

    # Gold first: math-verify is asymmetric (e.g. it reduces a predicted `x = 3` to 3).
    return verify(list(gold), list(predicted), timeout_seconds=None, raise_on_error=True)


def _parsed(forms: tuple[object, ...]) -> bool:
    # math-verify falls back to the raw string when sympy fails; that is no parse.
    return any(not isinstance(form, str) for form in forms)


def compare_with_math_verify(gold_text: str, gold_pct: bool, pred_text: str, pred_pct: bool) -> tuple[Verdict, str]:
    """(verdict, reason) for two normalised answers. Runs in the bounded worker."""
    try:
        gold_parsed = _parse(gold_text) if gold_text else ()
        if not _parsed(gold_parsed):
            return "unknown", "unparseable gold answer"
        pred_parsed = _parse(pred_text) if pred_text else ()
        if not _parsed(pred_parsed):
            return "unknown", UNPARSEABLE_ANSWER
        if _equivalent(gold_parsed, pred_parsed):
            return "correct", "equivalent to gold"
        if gold_pct or pred_pct:
            # Compared without the percent signs above; also try them as written (25% = 0.25).
            gold_raw = _parse(gold_text + "\\%") if gold_pct else gold_parsed
            pred_raw = _parse(pred_text + "\\%") if pred_pct else pred_parsed
            if gold_raw and pred_raw and _equivalent(gold_raw, pred_raw):
                return "correct", "equivalent to gold"
    except Exception as error:  # noqa: BLE001  # any checker failure means "cannot decide"
        return "unknown", f"checker error: {type(error).__name__}: {str(error)[:200]}"
    return "incorrect", "not equivalent to gold"


_MATH_VERIFY = BoundedPool(
    "rmforge.verifiers.answers:compare_with_math_verify",
    memory_mb=WORKER_MEMORY_MB,
    warm_up=("\\frac{1}{2}", False, "0.5", True),  # imports sympy and the LaTeX parser
)


@lru_cache(maxsize=65536)
def _bounded_compare(
    gold_text: str, gold_pct: bool, pred_text: str, pred_pct: bool, timeout_s: float
) -> tuple[Verdict, str]:
    """`compare_with_math_verify` under the time/memory bound. Cached: MC grading repeats pairs."""
    verdict, reason = _MATH_VERIFY.call(gold_text, gold_pct, pred_text, pred_pct, timeout_s=timeout_s)
    return verdict, reason


def _gold_answer(gold: str) -> str:
    """Raw GSM8K / MATH solutions carry their answer behind a marker; plain golds pass through."""
    if "####" in gold or "\\boxed" in gold or "\\fbox" in gold:
        return extract_final_answer(gold) or gold
    return gold


def _logic_label(answer: str) -> str:
    # Judge the leading label, not an explanation after it ("True, since ...").
    return re.split(r"[,;:(]|\s-\s|\.\s", normalise_text(answer), maxsplit=1)[0].strip()


def _grade_text(gold: str, predicted: str) -> GradeResult:
    if len(predicted) > MAX_ANSWER_CHARS:
        return GradeResult("unknown", predicted, f"answer too long to check ({len(predicted)} chars)")
    gold_text = normalise_text(gold)
    if not gold_text:
        return GradeResult("unknown", predicted, "unparseable gold answer")
    if _logic_label(predicted) == gold_text:
        return GradeResult("correct", predicted, "matches gold")
    return GradeResult("incorrect", predicted, "does not match gold")


def _grade_math(gold: str, predicted: str, timeout_s: float) -> GradeResult:
    gold_word = word_answer(gold)
    if gold_word is not None:
        if word_answer(predicted) == gold_word:
            return GradeResult("correct", predicted, "matches gold")
        return GradeResult("incorrect", predicted, "does not match gold")

    gold_norm = prepare_math(gold)
    if gold_norm is None:
        return GradeResult("unknown", predicted, f"gold answer too long to check ({len(gold)} chars)")
    pred_norm = prepare_math(predicted)
    if pred_norm is None:
        return GradeResult("unknown", predicted, f"answer too long to check ({len(predicted)} chars)")
    same = _compare_plain_numbers(gold_norm, pred_norm)
    if same is not None:
        if same:
            return GradeResult("correct", predicted, "equivalent to gold")
        return GradeResult("incorrect", predicted, "not equivalent to gold")
    if is_numeric_gold(gold) and names_several_numbers(predicted, besides=gold_norm[0]):
        return GradeResult("unknown", predicted, "the answer names several numbers, none of them the gold")
    if max(len(gold_norm[0]), len(pred_norm[0])) > MAX_ANSWER_CHARS:
        return GradeResult("unknown", predicted, "answer too long to check")
    try:
        verdict, reason = _bounded_compare(*gold_norm, *pred_norm, timeout_s)
    except CheckTimeout as error:
        return GradeResult("unknown", predicted, str(error))
    except CheckFailed as error:
        return GradeResult("unknown", predicted, f"checker error: {error}")
    if reason == "unparseable gold answer":
        reason = f"unparseable gold answer: {gold[:80]!r}"
    return GradeResult(verdict, predicted, reason)


MissingAnswer = Literal["unknown", "incorrect"]


def grade_response(
    response: str,
    gold: str | None,
    *,
    finish_reason: str | None = None,
    domain: str = "math",
    timeout_s: float = 5.0,
    question: str | None = None,
    missing_answer: MissingAnswer = "unknown",
) -> GradeResult:
    """Grade a response's final answer against the gold (see the module docstring).

    `question` lets the prose fallback tell the numbers a problem gives from the one a
    response concludes; `missing_answer` is the verdict for a finished response with no
    answer found ("incorrect" where the prompt demanded a marked answer).
    """
    predicted = extract_final_answer(response)
    if gold is None or not gold.strip():
        return GradeResult("unknown", predicted, "no gold answer")
    if finish_reason == "length":
        return GradeResult("incorrect", predicted, "truncated")
    if not response.strip():
        return GradeResult("incorrect", None, "empty response")
    gold_answer = _gold_answer(gold)
    if predicted is None:
        if len(response) > MAX_SCAN_CHARS:
            return GradeResult(
                "unknown", None, f"no final answer in the last {MAX_SCAN_CHARS} of {len(response)} chars"
            )
        stated = prose_answer(response, question) if domain != "logic" and is_numeric_gold(gold_answer) else None
        if stated is None:
            return GradeResult(missing_answer, None, "no final answer found")
        result = _grade_math(gold_answer, stated, timeout_s)
        return dataclasses.replace(result, reason=f"{result.reason} (answer read from the last sentence)")
    if domain == "logic":
        return _grade_text(gold_answer, predicted)
    return _grade_math(gold_answer, predicted, timeout_s)


# ----------------------------------------------------------- answers to one another


def normalised_answer(answer: str, domain: str = "math") -> str:
    """A key under which equal-looking answers coincide (`\\$1,000.` and `1000`, `**True**` and `true`).

    Equal keys mean equivalent answers; different keys may still be equivalent
    (`1/2` and `0.5`): `answers_equivalent` decides those.
    """
    if domain == "logic":
        return _logic_label(answer)
    word = word_answer(answer)
    if word is not None:
        return word
    prepared = prepare_math(answer)
    if prepared is None:
        return answer.strip()
    text, percent = prepared
    return text + "%" if percent else text


def answers_equivalent(first: str, second: str, *, domain: str = "math", timeout_s: float = 5.0) -> bool | None:
    """Whether two final answers are equivalent, by the comparison grading uses; None if undecidable.

    Logic answers compare by their leading label. Otherwise the first answer takes the
    gold's place in the comparison, and either answer failing to parse (or a timeout, or
    an answer past the bounds) leaves it undecided.
    """
    if domain == "logic":
        labels = _logic_label(first), _logic_label(second)
        return labels[0] == labels[1] if all(labels) else None
    result = _grade_math(first, second, timeout_s)
    return None if result.verdict == "unknown" else result.verdict == "correct"
