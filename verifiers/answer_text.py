"""Reading a response's final answer as text: where it is (`\\boxed{}`, "The answer is", `#### N`,
`A: N`) and its normal form for comparison (digits, signs, percent, units, wrapping). The grading
rules that use them are in `verifiers/answers.py`."""

from __future__ import annotations

import re
import unicodedata

MAX_SCAN_CHARS = 262_144
MAX_ANSWER_CHARS = 1_000
# Beyond this, a wrapping layer ($..$, **..**) is not peeled: real answers have two or three.
_MAX_WRAPPING_LAYERS = 8


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
PLAIN_NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d{1,6})?")
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


def prepare_math(answer: str) -> tuple[str, bool] | None:
    """`_normalise_math`, or for an over-long answer its plain number; None if neither."""
    if len(answer) <= MAX_ANSWER_CHARS:
        return _normalise_math(answer)
    number = _LONG_NUMBER_RE.fullmatch(ascii_digits(_unwrap_boxed(answer)))
    return (number.group("num"), False) if number else None


_TEXT_WRAPPER_RE = re.compile(_TEXT_CMD + r"\{([^{}]*)\}")
# A word answer ("Sunday", "\text{odd}"): letters only and at least one 3-letter word,
# so single-letter or algebraic answers ("x", "ab") still go to math-verify.
_WORD_ANSWER_RE = re.compile(r"^(?=.*[A-Za-z]{3})[A-Za-z][A-Za-z\s'\-]*$")


def normalise_text(answer: str) -> str:
    """Case-folded word answer: `\\boxed{\\text{False}}`, `**True**.` -> "false", "true"."""
    text = _strip_wrapping(_unwrap_boxed(_strip_wrapping(answer)))
    text = _TEXT_WRAPPER_RE.sub(r"\1", text)
    text = re.sub(r"[$*`\"]", "", text)
    text = text.strip().strip("()[]{}").strip().rstrip(".,;:!?")
    return re.sub(r"\s+", " ", text).lower()


def word_answer(answer: str) -> str | None:
    if len(answer) > MAX_ANSWER_CHARS:
        return None
    text = normalise_text(answer)
    return text if _WORD_ANSWER_RE.match(text) else None
