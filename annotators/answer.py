"""Final-answer verifier: is the answer a rollout ends with equivalent to the gold?

Equivalence is decided by `math-verify` (sympy-backed: 1/2 = 0.5, sqrt(8) = 2 sqrt(2),
(1,3] as an interval, {1,2} = {2,1}, x = 3 ~ 3, ...), never by a bare string match.
Logic problems (gold True / False / Uncertain) and word answers ("Sunday") compare
case-insensitively after normalisation instead, because sympy would read a word as a
product of symbols ("True" -> E*r*t*u).

Verdict standards (shared by every annotator that grades answers):

* "incorrect": a truncated response (finish_reason == "length"), even with a boxed
  answer; a response with no final answer; an answer math-verify cannot parse; an
  answer not equivalent to the gold. These are decidable without the gold, so they
  are checked first.
* "unknown" only when the checker cannot decide: no gold, a gold that cannot be
  parsed, or a timeout / exception inside math-verify.

Percentages: math-verify reads "25%" as 0.25 (only integer 25% = 25 is special-cased),
so "12.5%" would not match a gold "12.5". GSM8K-style graders count a trailing percent
sign as decoration, so both sides are compared with the percent sign stripped, and
(when either side had one) also as written, so "25%" also matches a gold "0.25".

The module-level functions are pure and cached (Monte Carlo grading calls them
thousands of times against the same gold).
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException
from pydantic import Field

from annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from schemas.config import Config as StrictConfig
from schemas.records import Verdict

# One shared instance: math-verify caches its compiled regexes per config object.
_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())


@dataclass(frozen=True, slots=True)
class GradeResult:
    verdict: Verdict
    predicted: str | None
    reason: str


# --------------------------------------------------------------------------- extraction

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_GSM8K_RE = re.compile(r"####[ \t]*(?P<ans>[^\n]*\S)")
# "The answer is 72", "the final answer is $\frac12$.", "Final Answer: ..." (anywhere).
# Two patterns, searched separately, so "Final Answer: The final answer is $7$." also
# yields the later, tighter "answer is" capture.
_PHRASE_RES = (
    re.compile(r"\banswer\s+is\b[ \t]*[:：]?[ \t]*(?P<ans>[^\n]*\S)", re.IGNORECASE),
    re.compile(
        r"\bfinal\s+answer\b[ \t]*\**[ \t]*[:：][ \t]*\**[ \t]*(?P<ans>[^\n]*\S)", re.IGNORECASE
    ),
)
# "A: 72" / "Answer: 72" / "**Answer:** 72" at the start of a line.
_LINE_RE = re.compile(
    r"^[ \t>#*]*(?:A|Answer)[ \t]*\**[ \t]*[:：][ \t]*\**[ \t]*(?P<ans>[^\n]*\S)",
    re.IGNORECASE | re.MULTILINE,
)
# "... the answer is correct." is commentary, not an answer: skip phrase captures
# that open with one of these words so an earlier real answer still wins.
_NOT_AN_ANSWER = frozenset(
    "correct incorrect right wrong reasonable consistent valid indeed clearly below above "
    "following that as given in to not probably likely".split()
)
_SENTENCE_END_RE = re.compile(r"[.!?;](?=\s|$)")
_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")


def _balanced(text: str, start: int) -> str | None:
    """Content from `start` (just after an opening brace) to its matching brace."""
    depth = 1
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # escaped char such as \{ or \} does not count
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None  # unbalanced, e.g. a truncated response


def _boxed_candidates(text: str) -> list[tuple[int, str]]:
    found = []
    for match in _BOXED_RE.finditer(text):
        content = _balanced(text, match.end())
        if content is not None and content.strip():
            found.append((match.start(), content.strip()))
    return found


def _unwrap_boxed(text: str) -> str:
    """`\\boxed{x}` (possibly inside `$...$`) -> `x`; anything else unchanged."""
    boxed = _boxed_candidates(text)
    return boxed[-1][1] if boxed else text


def _trim_sentence(text: str) -> str:
    """Cut a phrase capture to the answer itself: a `$...$` span or up to the sentence end."""
    text = text.strip()
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(opener) and closer in text:
            return text[: text.index(closer) + len(closer)]
    if text.startswith("$"):
        closing = _UNESCAPED_DOLLAR_RE.search(text, 2 if text.startswith("$$") else 1)
        # No closing dollar: "$18." is currency, fall through to the sentence rule.
        if closing is not None:
            end = closing.end() + (1 if text.startswith("$$") else 0)
            return text[:end]
    end = _SENTENCE_END_RE.search(text)
    return text[: end.start()] if end else text


def _strip_wrapping(text: str) -> str:
    """Drop markdown bold, math delimiters and trailing punctuation around an answer."""
    previous = None
    while text != previous:
        previous = text
        text = text.strip().strip("*").strip()
        text = text.rstrip(".,;:").strip()  # not "!": \boxed{5!} is a factorial
        for opener, closer in (("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")):
            wrapped = text.startswith(opener) and text.endswith(closer)
            if wrapped and len(text) > len(opener) + len(closer):
                # Not "$5 and $6": the inner text must hold no further delimiter.
                inner = text[len(opener) : len(text) - len(closer)]
                if opener != "$" or not _UNESCAPED_DOLLAR_RE.search(inner):
                    text = inner
                    break
    return text


def extract_final_answer(text: str) -> str | None:
    """The final answer a model wrote, or None. The last marker in the text wins.

    Markers: `\\boxed{...}` / `\\fbox{...}` (balanced braces), GSM8K `#### 72`,
    "The (final) answer is ...", "Final Answer: ...", and "A:" / "Answer:" at the
    start of a line. Math delimiters, bold and trailing punctuation are removed;
    units, currency and percent signs are kept (grading normalises them).
    """
    if not text:
        return None
    # (position where the answer starts, raw answer)
    candidates: list[tuple[int, str]] = _boxed_candidates(text)
    for match in _GSM8K_RE.finditer(text):
        candidates.append((match.start("ans"), match.group("ans")))
    for match in _LINE_RE.finditer(text):
        candidates.append((match.start("ans"), _trim_sentence(match.group("ans"))))
    for pattern in _PHRASE_RES:
        for match in pattern.finditer(text):
            answer = _trim_sentence(match.group("ans"))
            first_word = re.match(r"[A-Za-z]+", answer)
            if first_word and first_word.group(0).lower() in _NOT_AN_ANSWER:
                continue
            candidates.append((match.start("ans"), answer))

    # Latest start wins; "The answer is $\boxed{7}$" yields the boxed one, which starts later.
    for _, raw in sorted(candidates, key=lambda c: c[0], reverse=True):
        answer = _strip_wrapping(_unwrap_boxed(_strip_wrapping(raw)))
        if answer:
            return answer
    return None


# ------------------------------------------------------------------------ normalisation

_TEXT_CMD = r"\\(?:text|textrm|textnormal|textbf|mbox|mathrm|mathbf|operatorname)\s*"
_PERCENT_RE = re.compile(
    r"\s*(?:\\%|%|percent|" + _TEXT_CMD + r"\{\s*(?:\\?%|percent)\s*\})\s*$", re.IGNORECASE
)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b|\\textdegree\b")
# A trailing `\text{ cm}` (after optional LaTeX spacing) behind a number or closing brace.
_TEXT_UNIT_RE = re.compile(
    r"(?<=[\d}\s])\s*(?:\\[,;:! ]|~)*\s*"
    + _TEXT_CMD
    + r"\{\s*[A-Za-z][A-Za-z\s.\-/^0-9]*\}\s*(?:\^\s*\{?\d\}?)?$"
)
_NUMBER = r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?"
# "18 dollars", "12 square feet", "5 cm^2", "3 hours": a number, whitespace, then words only.
_WORD_UNIT_RE = re.compile(
    r"^(?P<num>" + _NUMBER + r")\s+(?P<unit>[A-Za-z][A-Za-z.'\-]*(?:\s+[A-Za-z][A-Za-z.'\-]*)*)"
    r"(?:\s*\^\s*\{?\d\}?)?$"
)
# "3 and 4", "2 or 3", "5 by 3" list several values: not a unit.
_CONNECTIVE_RE = re.compile(r"\b(?:and|or|to|by|plus|minus|times|over)\b", re.IGNORECASE)
# Thousands separators only in this exact shape, so "1,2", "(1, 3]" and "\{1,2\}" survive.
_THOUSANDS_RE = re.compile(
    r"^(?P<lhs>[A-Za-z]\w*\s*=\s*)?(?P<num>[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?)$"
)
_LATEX_THIN_SPACE_RE = re.compile(r"(?<=\d)(?:\{,\}|\\[,!;]|\\ )(?=\d{3}\b)")


def _split_percent(text: str) -> tuple[str, bool]:
    stripped = _PERCENT_RE.sub("", text)
    return (stripped, True) if stripped != text and stripped else (text, False)


def _normalise_math(answer: str) -> tuple[str, bool]:
    """Clean an answer for math-verify; returns (text, had a trailing percent sign)."""
    text = _strip_wrapping(_unwrap_boxed(_strip_wrapping(answer)))
    # Currency: `\$18`, `$18` (math delimiters were stripped above, so any dollar left is a sign).
    text = text.replace("\\$", "").replace("$", "").strip()
    text, percent = _split_percent(text)
    text = _DEGREE_RE.sub("", text).strip()
    for _ in range(2):  # "5\,\text{cm}^2", then a possible second unit text
        text = _TEXT_UNIT_RE.sub("", text).strip()
    word_unit = _WORD_UNIT_RE.match(text)
    if word_unit and not _CONNECTIVE_RE.search(word_unit.group("unit")):
        text = word_unit.group("num")
    text = _LATEX_THIN_SPACE_RE.sub("", text)
    thousands = _THOUSANDS_RE.match(text)
    if thousands:
        text = (thousands.group("lhs") or "") + thousands.group("num").replace(",", "")
    return text.strip(), percent


_TEXT_WRAPPER_RE = re.compile(_TEXT_CMD + r"\{([^{}]*)\}")
# A word answer ("Sunday", "\text{odd}"): letters only and at least one 3-letter word,
# so single-letter or algebraic answers ("x", "ab") still go to math-verify.
_WORD_ANSWER_RE = re.compile(r"^(?=.*[A-Za-z]{3})[A-Za-z][A-Za-z\s'\-]*$")


def _normalise_text(answer: str) -> str:
    """Case-folded word answer: `\\boxed{\\text{False}}`, `**True**.` -> "false", "true"."""
    text = _strip_wrapping(_unwrap_boxed(_strip_wrapping(answer)))
    text = _TEXT_WRAPPER_RE.sub(r"\1", text)
    text = re.sub(r"[$*`\"]", "", text)
    text = text.strip().strip("()[]{}").strip().rstrip(".,;:!?")
    return re.sub(r"\s+", " ", text).lower()


def _word_answer(answer: str) -> str | None:
    text = _normalise_text(answer)
    return text if _WORD_ANSWER_RE.match(text) else None


# ------------------------------------------------------------------------- math-verify


def _timeout(timeout_s: float) -> int | None:
    # signal.alarm (math-verify's timeout) takes whole seconds and works only in the
    # main thread; elsewhere it raises ValueError, so run without one there.
    if threading.current_thread() is not threading.main_thread():
        return None
    return max(1, math.ceil(timeout_s))


@lru_cache(maxsize=16384)
def _parse(text: str, timeout: int | None) -> tuple[object, ...]:
    """Parsed forms of one normalised answer (gold or predicted); () when unparseable.

    Cached: the same gold is parsed once per process, not once per completion.
    Exceptions (timeouts) are not cached, so a retry re-parses.
    """
    # `\boxed{}` makes math-verify take the whole answer as one LaTeX expression;
    # plain numbers parse the same way.
    parsed = parse(
        "\\boxed{" + text + "}",
        extraction_config=_EXTRACTION,
        parsing_timeout=timeout,  # type: ignore[arg-type]  # None disables the alarm
        raise_on_error=True,
    )
    return tuple(parsed)


def _equivalent(
    gold: tuple[object, ...], predicted: tuple[object, ...], timeout: int | None
) -> bool:
    # Gold first: math-verify is asymmetric (e.g. it reduces a predicted `x = 3` to 3).
    return verify(list(gold), list(predicted), timeout_seconds=timeout, raise_on_error=True)


def _gold_answer(gold: str) -> str:
    """Raw GSM8K / MATH solutions carry their answer behind a marker; plain golds pass through."""
    if "####" in gold or "\\boxed" in gold or "\\fbox" in gold:
        return extract_final_answer(gold) or gold
    return gold


def _grade_text(gold: str, predicted: str) -> GradeResult:
    gold_text = _normalise_text(gold)
    if not gold_text:
        return GradeResult("unknown", predicted, "unparseable gold answer")
    pred_text = _normalise_text(predicted)
    # Logic labels: judge the leading label, not an explanation after it ("True, since ...").
    pred_text = re.split(r"[,;:(]|\s-\s|\.\s", pred_text, maxsplit=1)[0].strip()
    if pred_text == gold_text:
        return GradeResult("correct", predicted, "matches gold")
    return GradeResult("incorrect", predicted, "does not match gold")


def _grade_math(gold: str, predicted: str, timeout_s: float) -> GradeResult:
    gold_word = _word_answer(gold)
    if gold_word is not None:
        if _word_answer(predicted) == gold_word:
            return GradeResult("correct", predicted, "matches gold")
        return GradeResult("incorrect", predicted, "does not match gold")

    timeout = _timeout(timeout_s)
    gold_norm, gold_pct = _normalise_math(gold)
    pred_norm, pred_pct = _normalise_math(predicted)
    try:
        gold_parsed = _parse(gold_norm, timeout) if gold_norm else ()
        # math-verify falls back to the raw string when sympy fails; a gold needs a real parse.
        if not any(not isinstance(form, str) for form in gold_parsed):
            return GradeResult("unknown", predicted, f"unparseable gold answer: {gold[:80]!r}")
        pred_parsed = _parse(pred_norm, timeout) if pred_norm else ()
        if not any(not isinstance(form, str) for form in pred_parsed):
            return GradeResult("incorrect", predicted, "unparseable answer")
        if _equivalent(gold_parsed, pred_parsed, timeout):
            return GradeResult("correct", predicted, "equivalent to gold")
        if gold_pct or pred_pct:
            # Compared without the percent signs above; also try them as written (25% = 0.25).
            gold_raw = _parse(gold_norm + "\\%", timeout) if gold_pct else gold_parsed
            pred_raw = _parse(pred_norm + "\\%", timeout) if pred_pct else pred_parsed
            if gold_raw and pred_raw and _equivalent(gold_raw, pred_raw, timeout):
                return GradeResult("correct", predicted, "equivalent to gold")
    except TimeoutException:  # a BaseException: must be named
        return GradeResult("unknown", predicted, "checker timeout")
    except Exception as error:  # noqa: BLE001  # any checker failure means "cannot decide"
        return GradeResult("unknown", predicted, f"checker error: {type(error).__name__}: {error}")
    return GradeResult("incorrect", predicted, "not equivalent to gold")


def grade_response(
    response: str,
    gold: str | None,
    *,
    finish_reason: str | None = None,
    domain: str = "math",
    timeout_s: float = 5.0,
) -> GradeResult:
    """Grade a response's final answer against the gold (see the module docstring)."""
    predicted = extract_final_answer(response)
    if finish_reason == "length":
        return GradeResult("incorrect", predicted, "truncated")
    if predicted is None:
        return GradeResult("incorrect", None, "no final answer")
    if gold is None or not gold.strip():
        return GradeResult("unknown", predicted, "no gold answer")
    gold_answer = _gold_answer(gold)
    if domain == "logic":
        return _grade_text(gold_answer, predicted)
    return _grade_math(gold_answer, predicted, timeout_s)


# --------------------------------------------------------------------------- annotator


class AnswerAnnotator(Annotator):
    """One outcome label per rollout: is its final answer equivalent to the gold?"""

    name = "answer"
    version = "1"
    evidence = Evidence(labels_outcomes=True, authority="verifier", score="indicator")

    class Config(StrictConfig):
        timeout_s: float = Field(
            default=5.0, gt=0, description="Per parse / comparison; whole seconds (signal.alarm)."
        )

    config: Config

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        output = AnnotationOutput()
        for item in items:
            result = grade_response(
                item.rollout.response,
                item.problem.gold_answer,
                finish_reason=item.rollout.finish_reason,
                domain=item.problem.domain,
                timeout_s=self.config.timeout_s,
            )
            score = {"correct": 1.0, "incorrect": 0.0}.get(result.verdict)
            output.outcome_labels.append(
                self.outcome_label(
                    item,
                    result.verdict,
                    run_id,
                    predicted_answer=result.predicted,
                    score=score,
                    reason=result.reason,
                )
            )
        return output
