"""The answer a response without an answer marker asserts in its last sentence, read as a grader
reads it ("So, it took James 2 hours."): see `prose_answer`. Used by `verifiers/answers.py`."""

from __future__ import annotations

import re
from decimal import Decimal

from rmforge.verifiers.answer_text import prepare_math

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


def names_several_numbers(answer: str, besides: str) -> bool:
    """Words naming more than one number ("4 blue and 6 red shoe boxes"), none of them `besides`.

    Whether such a list answers a one-number question (its sum? one of them?) is a judgement,
    not a check. A list that includes the gold is graded as usual: it hedges ("3 and 4" for 3).
    """
    answer = _MIXED_NUMBER_RE.sub("mixed", answer)  # "1 and 1/3" is one number
    numbers = {_number_value(m.group()) for m in _STATED_NUMBER_RE.finditer(answer)}
    return len(numbers) > 1 and _number_value(besides) not in numbers and _WORD_RE.search(answer) is not None


def is_numeric_gold(gold: str) -> bool:
    normalised = prepare_math(gold)
    return normalised is not None and _NUMERIC_GOLD_RE.fullmatch(normalised[0].replace(" ", "")) is not None
