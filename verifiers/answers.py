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
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from rmforge.schemas.records import Verdict
from rmforge.verifiers.bounded import BoundedPool, CheckFailed, CheckTimeout

MAX_SCAN_CHARS = 262_144
UNPARSEABLE_ANSWER = "unparseable answer"
MAX_ANSWER_CHARS = 1_000
WORKER_MEMORY_MB = 2_048
# Beyond this, a wrapping layer ($..$, **..**) is not peeled: real answers have two or three.
_MAX_WRAPPING_LAYERS = 8


@dataclass(frozen=True, slots=True)
class GradeResult:
    verdict: Verdict
    predicted: str | None
    reason: str


# --------------------------------------------------------------------------- extraction

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A backslash escapes the next character (`\{` is not a brace); DOTALL so `\` + newline pairs too.
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)
# Captures run to the end of the line and are stripped in Python: a `[^\n]*\S` capture
# backtracks quadratically on long runs of trailing spaces.
_GSM8K_RE = re.compile(r"####(?P<ans>[^\n]*)")
# "The answer is 72", "the final answer is $\frac12$.", "Final Answer: ..." (anywhere).
# Two patterns, searched separately, so "Final Answer: The final answer is $7$." also
# yields the later, tighter "answer is" capture.
_PHRASE_RES = (
    re.compile(r"\banswer\s+is\b[ \t]*[:：]?(?P<ans>[^\n]*)", re.IGNORECASE),
    re.compile(r"\bfinal\s+answer\b[ \t]*\**[ \t]*[:：](?P<ans>[^\n]*)", re.IGNORECASE),
)
# "A: 72" / "Answer: 72" / "**Answer:** 72" at the start of a line.
_LINE_RE = re.compile(r"^[ \t>#*]*(?:A|Answer)[ \t]*\**[ \t]*[:：](?P<ans>[^\n]*)", re.IGNORECASE | re.MULTILINE)
# "... the answer is correct." is commentary, not an answer: skip phrase captures
# that open with one of these words so an earlier real answer still wins.
_NOT_AN_ANSWER = frozenset(
    [
        "correct",
        "incorrect",
        "right",
        "wrong",
        "reasonable",
        "consistent",
        "valid",
        "indeed",
        "clearly",
        "below",
        "above",
        "following",
        "that",
        "as",
        "given",
        "in",
        "to",
        "not",
        "probably",
        "likely",
    ]
)
_SENTENCE_END_RE = re.compile(r"[.!?;](?=\s|$)")
_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")


def _boxed_candidates(text: str) -> list[tuple[int, str]]:
    """(start, content) of every non-empty, balanced `\\boxed{...}` / `\\fbox{...}`.

    One pass over the braces from the first box on, so many unbalanced boxes stay linear.
    """
    boxes = list(_BOXED_RE.finditer(text))
    if not boxes:
        return []
    closing: dict[int, int] = {}
    open_at: list[int] = []
    for token in _BRACE_TOKEN_RE.finditer(text, boxes[0].start()):
        if token.group() == "{":
            open_at.append(token.start())
        elif token.group() == "}" and open_at:
            closing[open_at.pop()] = token.start()
    found = []
    for box in boxes:
        end = closing.get(box.end() - 1)
        if end is not None:  # None: unbalanced, e.g. a truncated response
            content = text[box.end() : end].strip()
            if content:
                found.append((box.start(), content))
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
    sentence_end = _SENTENCE_END_RE.search(text)
    return text[: sentence_end.start()] if sentence_end else text


def _strip_wrapping(text: str) -> str:
    """Drop markdown bold, math delimiters and trailing punctuation around an answer."""
    for _ in range(_MAX_WRAPPING_LAYERS):
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
        if text == previous:
            break
    return text


def extract_final_answer(text: str) -> str | None:
    """The final answer a model wrote, or None. The last marker in the text wins.

    Markers: `\\boxed{...}` / `\\fbox{...}` (balanced braces), GSM8K `#### 72`,
    "The (final) answer is ...", "Final Answer: ...", and "A:" / "Answer:" at the
    start of a line. Math delimiters, bold and trailing punctuation are removed;
    units, currency and percent signs are kept (grading normalises them).
    Only the last `MAX_SCAN_CHARS` characters are searched.
    """
    if not text:
        return None
    text = text[-MAX_SCAN_CHARS:]
    # (position where the answer starts, raw answer)
    candidates: list[tuple[int, str]] = _boxed_candidates(text)
    for match in _GSM8K_RE.finditer(text):
        candidates.append((match.start("ans"), match.group("ans").strip()))
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

_MINUS_SIGNS = {ord(c): "-" for c in "\u2212\u2012\u2013\ufe63\uff0d"}


def ascii_digits(text: str) -> str:
    """Decimal digits of any script as ASCII (`٧` -> `7`, `７` -> `7`), unicode minus as `-`.

    Only category Nd digits: superscripts (`x²`) are exponents, not digits.
    """
    if text.isascii():
        return text
    return "".join(
        str(unicodedata.decimal(ch)) if not ch.isascii() and ch.isdecimal() else ch
        for ch in text.translate(_MINUS_SIGNS)
    )


_TEXT_CMD = r"\\(?:text|textrm|textnormal|textbf|mbox|mathrm|mathbf|operatorname)\s*"
_PERCENT_RE = re.compile(r"\s*(?:\\%|%|percent|" + _TEXT_CMD + r"\{\s*(?:\\?%|percent)\s*\})\s*$", re.IGNORECASE)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b|\\textdegree\b")
# A trailing `\text{ cm}` (after optional LaTeX spacing) behind a number or closing brace.
_TEXT_UNIT_RE = re.compile(
    r"(?<=[\d}\s])\s*(?:\\[,;:! ]|~)*\s*" + _TEXT_CMD + r"\{\s*[A-Za-z][A-Za-z\s.\-/^0-9]*\}\s*(?:\^\s*\{?\d\}?)?$"
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
_THOUSANDS_RE = re.compile(r"^(?P<lhs>[A-Za-z]\w*\s*=\s*)?(?P<num>[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?)$")
_LATEX_THIN_SPACE_RE = re.compile(r"(?<=\d)(?:\{,\}|\\[,!;]|\\ )(?=\d{3}\b)")
# What the in-process fast path decides: math-verify rounds to 6 decimals, so exact
# comparison agrees with it only up to 6 decimals.
_STRAY_DIGIT_ESCAPE_RE = re.compile(r"(?<!\\)\\(?=\d)")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d{1,6})?")
# A long answer may still be a plain number (a 100,000-digit `\boxed{}`): cheap wrapping only.
_LONG_NUMBER_RE = re.compile(r"[$\s]*(?P<num>[-+]?\d+(?:\.\d{1,6})?)[$.\s]*")


def _split_percent(text: str) -> tuple[str, bool]:
    stripped = _PERCENT_RE.sub("", text)
    return (stripped, True) if stripped != text and stripped else (text, False)


def _normalise_math(answer: str) -> tuple[str, bool]:
    """Clean an answer for math-verify; returns (text, had a trailing percent sign)."""
    text = ascii_digits(_strip_wrapping(_unwrap_boxed(_strip_wrapping(answer))))
    # Currency: `\$18`, `$18` (math delimiters were stripped above, so any dollar left is a sign).
    text = text.replace("\\$", "").replace("$", "").strip()
    # No LaTeX command starts with a digit: `\15` is a stray escape of 15 (a mangled `\$15`).
    text = _STRAY_DIGIT_ESCAPE_RE.sub("", text)
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


def _prepare_math(answer: str) -> tuple[str, bool] | None:
    """`_normalise_math`, or for an over-long answer its plain number; None if neither."""
    if len(answer) <= MAX_ANSWER_CHARS:
        return _normalise_math(answer)
    number = _LONG_NUMBER_RE.fullmatch(ascii_digits(_unwrap_boxed(answer)))
    return (number.group("num"), False) if number else None


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
    if len(answer) > MAX_ANSWER_CHARS:
        return None
    text = _normalise_text(answer)
    return text if _WORD_ANSWER_RE.match(text) else None


# ------------------------------------------------------------------- prose fallback

# The prose fallback reads only the response's last sentence, so only its tail is scanned.
_PROSE_TAIL_CHARS = 2_000
# A sentence ends at ".", "!" or "?" before whitespace (not a decimal point), after display
# math or at a line break; display math (`\[...\]`, `$$...$$`) is one piece, line breaks and
# all, and a piece ending in ":" runs on into the next ("Its volume is:" + `\[ ... = 40 \]`).
_DISPLAY_MATH_RE = re.compile(r"\\\[.*?\\\]|\$\$.*?\$\$", re.DOTALL)
_SENTENCE_BREAK_RE = re.compile(r"(?<=[.!?])\s+|(?<=\\\])\s+|\n")
# Openers that carry no claim of their own: "So, ...", "**Answer:** ...".
_CONCLUSION_OPENER_RE = re.compile(
    r"^(?:(?:so|thus|therefore|hence|finally|overall|altogether|in\s+total|in\s+conclusion|answer)"
    r"\b[ \t]*[,:]?[ \t]*)+",
    re.IGNORECASE,
)
# A sentence that opens like these announces, supposes or asks; it claims no result
# ("Let me check 3 + 4.", "If she sells 3 more, she has 12.", "We need to find 5 + 2.").
_NO_CLAIM_RE = re.compile(
    r"^(?:let|let's|lets|now|next|first|to|check|verify|recheck|compute|calculate|find|determine"
    r"|consider|suppose|assume|if|when|wait|hmm|but|note|how|what|why|is|are|do|does|can)\b"
    r"|^(?:we|i|you)(?:'ll|'d|\s+(?:need|will|would|can|could|should|must|have\s+to|want|shall|may"
    r"|am|are\s+going))\b",
    re.IGNORECASE,
)
# A word of prose, not a LaTeX command name.
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
# A hedge makes a sentence no claim at all ("The answer might be 7.").
_HEDGE_RE = re.compile(r"\b(?:maybe|might|perhaps|possibly|probably|guess|not\s+sure)\b", re.IGNORECASE)
# The numbers a sentence states: a digit fraction in LaTeX, or a decimal number (thousands
# separators allowed, optional fraction bar and percent sign). `\15`-style escapes and
# currency signs are not part of the number.
_STATED_NUMBER_RE = re.compile(
    r"\\d?frac\{\s*-?\d+\s*\}\{\s*\d+\s*\}"
    r"|(?<![\w.^_])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*\\?%)?(?![\w])"
)
# Gold answers the fallback may be compared against: a plain number or a digit fraction.
_NUMERIC_GOLD_RE = re.compile(r"[-+]?(?:\d+(?:\.\d+)?(?:/\d+)?|\\d?frac\{\d+\}\{\d+\})")


def _last_sentence(response: str) -> str:
    tail = response[-_PROSE_TAIL_CHARS:]
    tail = _DISPLAY_MATH_RE.sub(lambda math: math.group().replace("\n", " "), tail)
    sentences: list[str] = []
    for piece in _SENTENCE_BREAK_RE.split(tail):
        piece = piece.strip()
        if sentences and sentences[-1].endswith(":"):
            sentences[-1] += " " + piece
        elif piece:
            sentences.append(piece)
    return sentences[-1] if sentences else ""


def _number_value(number: str) -> str:
    """A stated number as a comparable key: `1,000` and `1000.0` are one number."""
    plain = number.replace(",", "").replace(" ", "")
    try:
        return str(Decimal(plain).normalize())
    except ArithmeticError:  # a fraction or LaTeX: compared as written
        return plain


def prose_answer(response: str, question: str | None = None) -> str | None:
    """The number a response's last sentence asserts as its result, or None.

    For responses that state their answer in words ("So, it took James 2 hours."),
    read the way a human grader reads them: the last sentence must assert something
    (not announce, suppose, ask or hedge: "Let me check 3 + 4." claims nothing);
    in an equation the result is its right-hand side ("69 + 3 = 72 inches"); numbers
    the question gives are restatements, not results ("34 hours in 4 weeks"). The
    sentence must then name exactly one number; several leave the claim ambiguous.
    """
    sentence = _last_sentence(response).strip("*# \t")
    if not sentence or sentence.endswith(("?", ":")) or _HEDGE_RE.search(sentence):
        return None
    claim = _CONCLUSION_OPENER_RE.sub("", sentence.replace("*", "")).strip()
    if claim.startswith(("\\[", "$$")) or not _WORD_RE.search(claim) or _NO_CLAIM_RE.match(claim):
        return None  # a bare display equation is working shown, not a sentence
    result_side = claim.rsplit("=", 1)[-1]
    stated = {_number_value(m.group()): m.group() for m in _STATED_NUMBER_RE.finditer(result_side)}
    if len(stated) > 1 and question:
        given = {_number_value(m.group()) for m in _STATED_NUMBER_RE.finditer(question)}
        stated = {value: text for value, text in stated.items() if value not in given}
    return next(iter(stated.values())) if len(stated) == 1 else None


_MIXED_NUMBER_RE = re.compile(r"\d+\s*(?:\\text\s*\{\s*and\s*\}|and)\s*(?:\d+\s*/\s*\d+|\\d?frac\{\d+\}\{\d+\})")


def _names_several_numbers(answer: str, besides: str) -> bool:
    """Words naming more than one number ("4 blue and 6 red shoe boxes"), none of them `besides`.

    Whether such a list answers a one-number question (its sum? one of them?) is a judgement,
    not a check. A list that includes the gold is graded as usual: it hedges ("3 and 4" for 3).
    """
    answer = _MIXED_NUMBER_RE.sub("mixed", answer)  # "1 and 1/3" is one number
    numbers = {_number_value(m.group()) for m in _STATED_NUMBER_RE.finditer(answer)}
    return len(numbers) > 1 and _number_value(besides) not in numbers and _WORD_RE.search(answer) is not None


def _is_numeric_gold(gold: str) -> bool:
    normalised = _prepare_math(gold)
    return normalised is not None and _NUMERIC_GOLD_RE.fullmatch(normalised[0].replace(" ", "")) is not None


# ------------------------------------------------------------------------- math-verify


def _compare_plain_numbers(gold: tuple[str, bool], predicted: tuple[str, bool]) -> bool | None:
    """Exact comparison when both sides are plain numbers; None when math-verify must decide."""
    (gold_text, gold_pct), (pred_text, pred_pct) = gold, predicted
    if not (_PLAIN_NUMBER_RE.fullmatch(gold_text) and _PLAIN_NUMBER_RE.fullmatch(pred_text)):
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
    return re.split(r"[,;:(]|\s-\s|\.\s", _normalise_text(answer), maxsplit=1)[0].strip()


def _grade_text(gold: str, predicted: str) -> GradeResult:
    if len(predicted) > MAX_ANSWER_CHARS:
        return GradeResult("unknown", predicted, f"answer too long to check ({len(predicted)} chars)")
    gold_text = _normalise_text(gold)
    if not gold_text:
        return GradeResult("unknown", predicted, "unparseable gold answer")
    if _logic_label(predicted) == gold_text:
        return GradeResult("correct", predicted, "matches gold")
    return GradeResult("incorrect", predicted, "does not match gold")


def _grade_math(gold: str, predicted: str, timeout_s: float) -> GradeResult:
    gold_word = _word_answer(gold)
    if gold_word is not None:
        if _word_answer(predicted) == gold_word:
            return GradeResult("correct", predicted, "matches gold")
        return GradeResult("incorrect", predicted, "does not match gold")

    gold_norm = _prepare_math(gold)
    if gold_norm is None:
        return GradeResult("unknown", predicted, f"gold answer too long to check ({len(gold)} chars)")
    pred_norm = _prepare_math(predicted)
    if pred_norm is None:
        return GradeResult("unknown", predicted, f"answer too long to check ({len(predicted)} chars)")
    same = _compare_plain_numbers(gold_norm, pred_norm)
    if same is not None:
        if same:
            return GradeResult("correct", predicted, "equivalent to gold")
        return GradeResult("incorrect", predicted, "not equivalent to gold")
    if _is_numeric_gold(gold) and _names_several_numbers(predicted, besides=gold_norm[0]):
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
        stated = prose_answer(response, question) if domain != "logic" and _is_numeric_gold(gold_answer) else None
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
    word = _word_answer(answer)
    if word is not None:
        return word
    prepared = _prepare_math(answer)
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
