"""Reading `a = b = c` chains in a step into claims (`find_claims`)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

from rmforge.verifiers.arithmetic.expr import (
    BinOp,
    Claim,
    ClaimSource,
    Expr,
    Neg,
    NoParse,
    Root,
    canon,
    has_op,
    is_literal,
    leading_number,
)
from rmforge.verifiers.arithmetic.limits import MAX_CLAUSE_TOKENS, MAX_SIDE_TOKENS, unread_reason
from rmforge.verifiers.arithmetic.normalize import GSM8K_RE, normalize
from rmforge.verifiers.arithmetic.parser import Parser
from rmforge.verifiers.arithmetic.tokens import (
    EQ,
    LP,
    NUM,
    OP,
    OP_WORDS,
    OPERAND_START,
    RP,
    VAR,
    WORD,
    Tok,
    tokenize,
)

# Words that make every claim of a step approximate: `3.363... bags (round up to 4)`,
# `36 / 5 = 7 full pens (with a remainder of 1)`.
_APPROXIMATE_RE = re.compile(
    r"\b(?:approx\w*|about|around|roughly|nearly|almost|estimat\w*|round(?:s|ed|ing)?"
    r"|remainder|truncat\w*)\b|≈|~|\\approx|\\sim",
    re.I,
)

# Words that tell a division may leave a remainder (`2250 / 360 = 6 ... 90 degrees remaining`).
_REMAINDER_RE = re.compile(r"\b(?:remain\w*|left\s*over|leftover)\b", re.I)

# The writer tests a claim and rejects it (`2 + 8 = 4 \\implies 10 = 4, which is false`,
# `= 61 – This does not work`, `2 + 1 = 1 (False)`): a false claim in such a step may be
# the one rejected, so it is not the writer's error.
_REJECTED_RE = re.compile(
    r"(?<!true/)(?<!true /)\bfalse\b|\b(?:contradict\w*|fail(?:s|ed)?|impossible|incorrect|wrong|invalid|mistake)\b"
    r"|(?:\bnot|n['’]t)\s+(?:true|equal\w*|correct|valid|possible|work\w*|hold\w*|match\w*"
    r"|satisf\w*|the\s+case)\b|≠|\\neq?\b",
    re.I,
)
# Words that put the equation right after them as a supposition (`if 3 + 4 = 8`).
_SUPPOSING_WORDS = frozenset("if whether suppose supposing assume assuming".split())

# Unit words that scale the number before them rather than name what it counts.
_SCALE_WORDS = frozenset("hundred thousand million billion trillion lakh crore dozen".split())


@dataclass(slots=True)
class _Side:
    expr: Expr
    text: str
    units: frozenset[str]
    continuation: bool = False
    after_prose: bool = False  # words come before it in its clause
    doubt: str = ""
    supposed: str = ""  # it opens a chain the writer supposes (`if 3 + 4 = 8`)


def _side_text(text: str, toks: list[Tok], i: int, j: int, trim: bool) -> str:
    last = j - 1
    while trim and last > i and toks[last].kind in (WORD, OP):
        last -= 1  # a right side "9 eggs left for her" shows as "9", "40 hrs/week" as "40"
    return " ".join(text[toks[i].start : toks[last].end].split())


def _make_side(
    text: str,
    toks: list[Tok],
    span: tuple[int, int],
    parser: Parser,
    expr: Expr,
    first: _Side | None,
    trim: bool = False,
) -> _Side:
    shown = _side_text(text, toks, *span, trim)
    units = frozenset(parser.units)
    doubt = parser.doubt
    if not doubt and not units.isdisjoint(_SCALE_WORDS):
        doubt = "a scale word (`1.2 million`) multiplies its number"
    if not doubt and len(units) > 1 and _adds(expr):
        doubt = "it adds quantities in different units (`4 quarters + 3 dimes`)"
    if first is not None:
        return _Side(expr, f"{first.text} {shown}", units, True, doubt=doubt or first.doubt)
    return _Side(expr, shown, units, doubt=doubt)


def _parse_full(text: str, toks: list[Tok], i: int, j: int, first: _Side | None, calculator: bool) -> _Side | None:
    parser = Parser(toks, i, j, calculator)
    try:
        expr = parser.expr(first.expr if first else None)
    except NoParse:
        return None
    return _make_side(text, toks, (i, j), parser, expr, first) if parser.pos == j else None


def _parse_prefix(text: str, toks: list[Tok], i: int, j: int, first: _Side | None, calculator: bool) -> _Side | None:
    """The longest expression at the start of toks[i:j] that ends at a clean boundary."""
    parser = Parser(toks, i, j, calculator)
    try:
        expr = parser.expr(first.expr if first else None)
    except NoParse:
        return None
    end = parser.pos
    if end < j:
        nxt, last = toks[end], toks[end - 1]
        trailing_unit = nxt.kind == VAR and nxt.space and end + 1 == j == len(toks)  # "= 14 m"
        clean = nxt.kind in (WORD, LP, RP) or (nxt.kind == NUM and last.kind == WORD)
        if not (clean or trailing_unit):
            return None  # "= 3 * 2x", "= 9 - x": the expression goes on with a variable
    return _make_side(text, toks, (i, end), parser, expr, first, trim=True)


def _parse_suffix(text: str, toks: list[Tok], i: int, j: int, calculator: bool) -> _Side | None:
    """The longest expression ending toks[i:j] that starts at a clean boundary."""
    for s in range(max(i, j - MAX_SIDE_TOKENS), j):
        tok = toks[s]
        if tok.kind == OP and tok.op == "-":
            # "-16 + 20" is a negative number; "eggs left - 16 - 3" uses a dash.
            if s + 1 >= j or toks[s + 1].space:
                continue
        elif tok.kind not in OPERAND_START:
            continue
        if s > 0 and not _clean_start(toks, s):
            continue
        side = _parse_full(text, toks, s, j, None, calculator)
        if side is not None:
            side.after_prose = any(t.kind in (WORD, VAR) for t in toks[:s])
            if s and toks[s - 1].kind == OP:  # `_clean_start` allows only a spaced dash here
                side.doubt = "the `-` before it may be a dash or a minus"
            elif s and toks[s - 1].low in _SUPPOSING_WORDS:
                side.supposed = f"the writer supposes it (`{toks[s - 1].text} ...`), not claims it"
            return side
    return None


def _clean_start(toks: list[Tok], s: int) -> bool:
    """Whether an expression may start at toks[s]: not right after an operator, a
    variable or another number (`2x + 3`, `x - 3`, `2 1/2`)."""
    prev = toks[s - 1]
    if prev.kind == WORD:
        return prev.low not in OP_WORDS and prev.low != "by"
    if prev.kind == LP:
        return True
    if prev.kind == OP and prev.op == "-" and prev.space and toks[s].space:
        return s == 1 or toks[s - 2].kind == WORD  # a dash: "eggs left - 16 - 3 - 4 = 9"
    if prev.kind == RP:  # a list marker opening the clause: "1) 3 + 4 = 7", "(a) 3 + 4 = 7"
        return [t.kind for t in toks[: s - 1]] in ([NUM], [VAR], [LP, NUM], [LP, VAR])
    return False


def _adds(e: Expr) -> bool:
    if isinstance(e, BinOp):
        return e.op in "+-" or _adds(e.left) or _adds(e.right)
    return isinstance(e, (Neg, Root)) and _adds(e.operand)


def _first_side(side: _Side | None) -> list[_Side]:
    """A chain's opening side, unless it is a number inside the prose before the chain
    (`Time to heat up to 400 degrees = 20 + 8`, `Dogs - 2 = 9 - 2`)."""
    if side is None or (side.after_prose and is_literal(side.expr)):
        return []
    return [side]


def _doubt(left: _Side, right: _Side) -> str:
    for side in (left, right):
        if side.doubt:
            return side.doubt
        if "of" in side.units:
            return f"`{side.text}` may be a share of a quantity, not a number"
    if is_literal(left.expr) and left.units and left.units.isdisjoint(right.units):
        return f"`{left.text}` may name what is computed rather than equal it"
    return ""


@dataclass(frozen=True, slots=True)
class _StepWords:
    """What the words of a whole step say about every claim in it."""

    approximate: bool  # it speaks of rounding or approximation
    remainder: bool  # it speaks of what remains
    rejected: str  # why no claim of it may be the writer's (it rejects one), or ""


def _pairs(chain: list[_Side], source: ClaimSource, words: _StepWords, tentative: str) -> Iterator[Claim]:
    """The claims of a chain; `tentative` says why the writer may not assert them."""
    for k in range(len(chain) - 1):
        left, right = chain[k], chain[k + 1]
        if right.continuation or not (has_op(left.expr) or has_op(right.expr)):
            continue  # `1 hour = 60 minutes`, `25% = 0.25`: bare numbers are no claim
        followed = k + 2 < len(chain)
        lead = leading_number(right.expr) if followed or is_literal(left.expr) else None
        yield Claim(
            left.text,
            right.text,
            left.expr,
            right.expr,
            source,
            lead,
            left.units,
            right.units,
            doubt=_doubt(left, right) or chain[0].supposed or tentative,
            approximate=words.approximate,
            remainder=words.remainder,
        )


def _name(toks: list[Tok], end: int) -> str | None:
    """The words before a clause's first `=`, when they name a quantity
    (`Total fruits`, `Adam's age in 8 years`)."""
    words = toks[:end]
    if not any(t.kind == WORD for t in words):
        return None
    if any(t.kind not in (WORD, VAR, NUM) for t in words):
        return None
    return " ".join(t.low or t.text for t in words)


class _ClauseReader:
    """Claims clause by clause; remembers the last `NAME = expression` so that a
    restatement right after it (`\\[ Total = 52 + 24 \\] \\[ Total = 78 \\]`) is checked.

    """

    def __init__(self, source: ClaimSource, words: _StepWords) -> None:
        self.source, self.words = source, words
        self.calculator = source == "gsm8k"
        self.tentative = words.rejected
        self.definition: tuple[str, _Side] | None = None

    def claims(self, text: str, toks: list[Tok]) -> Iterator[Claim]:
        definition, self.definition = self.definition, None  # only the clause right after
        eqs = [k for k, tok in enumerate(toks) if tok.kind == EQ]
        if not eqs:
            return
        asked = text[toks[-1].end :].lstrip().startswith("?")
        self.tentative = "the writer asks it (`?`), not claims it" if asked else self.words.rejected
        bounds = [-1, *eqs, len(toks)]
        last = len(bounds) - 2
        chain: list[_Side] = []
        name = None
        for k in range(last + 1):
            i, j = bounds[k] + 1, bounds[k + 1]
            if k == 0:
                chain = _first_side(_parse_suffix(text, toks, i, j, self.calculator) if i < j else None)
                name = None if chain else _name(toks, j)
                continue
            if i == j:
                yield from self._pairs(chain)
                chain = []
                continue
            first = chain[-1] if chain and toks[i].kind == OP and toks[i].op in "+*/" else None
            if k == last:
                side = _parse_prefix(text, toks, i, j, first, self.calculator)
                if side is not None:
                    chain.append(side)
                yield from self._pairs(chain)
                if name is not None and len(eqs) == 1 and side is not None:
                    yield from self._restated(definition, name, side)
                return
            side = _parse_full(text, toks, i, j, first, self.calculator)
            if side is not None:
                chain.append(side)
                continue
            # "= 12 and 12 / 2 = 6": one chain ends inside this side and another begins.
            head = _parse_prefix(text, toks, i, j, first, self.calculator)
            if head is not None:
                chain.append(head)
            yield from self._pairs(chain)
            chain = _first_side(_parse_suffix(text, toks, i, j, self.calculator))

    def _restated(self, definition: tuple[str, _Side] | None, name: str, side: _Side) -> Iterator[Claim]:
        if definition is not None and definition[0] == name and is_literal(side.expr):
            yield from self._pairs([definition[1], side])
        if has_op(side.expr):
            self.definition = (name, side)

    def _pairs(self, chain: list[_Side]) -> Iterator[Claim]:
        return _pairs(chain, self.source, self.words, self.tentative)


@dataclass
class Reading:
    """The claims found in a step, and why any part of it was left unread."""

    claims: list[Claim]
    skipped: list[str]


def read_claims(step_text: str, deadline: float | None = None) -> Reading:
    """The explicit arithmetic equalities in a step, within the checker's bounds.

    A step out of bounds (`limits.unread_reason`) yields no claims and its reason; a
    clause too long to read, or the `deadline` (a `time.monotonic()` value) passing,
    skips the rest with a note.
    """
    if (why := unread_reason(step_text)) is not None:
        return Reading([], [why])
    rejected = _REJECTED_RE.search(step_text)
    words = _StepWords(
        approximate=_APPROXIMATE_RE.search(step_text) is not None,
        remainder=_REMAINDER_RE.search(step_text) is not None,
        rejected=f"the step rejects a claim (`{rejected.group()}`)" if rejected else "",
    )
    reading = Reading([], [])
    seen: dict[str, int] = {}
    for source, chunk in _sources(step_text):
        reader = _ClauseReader(source, words)
        # A line end always ends a clause: only lines with an `=` need tokenizing.
        for line in normalize(chunk).split("\n"):
            if "=" not in line:
                if line.strip():
                    reader.definition = None  # prose between a definition and a restatement
                continue
            for clause in tokenize(line):
                if deadline is not None and time.monotonic() > deadline:
                    reading.skipped.append("not all read: the step's time budget ran out")
                    return reading
                if len(clause) > MAX_CLAUSE_TOKENS:
                    reading.skipped.append(f"a clause longer than {MAX_CLAUSE_TOKENS} tokens was not read")
                    continue
                for claim in reader.claims(line, clause):
                    # `80,000+50,000 = $130,000` and `<<80000+50000=130000>>` are one claim,
                    # read without doubt where either reading has none (`18-36` is a range
                    # in prose, a difference in a calculator annotation).
                    key = f"{canon(claim.lhs)}={canon(claim.rhs)}"
                    if key not in seen:
                        seen[key] = len(reading.claims)
                        reading.claims.append(claim)
                    elif reading.claims[seen[key]].doubt and not claim.doubt:
                        kept = reading.claims[seen[key]]
                        reading.claims[seen[key]] = replace(kept, doubt="")
    return reading


# A GSM8K calculator annotation and the result shown after it: `<<35*500=17500>>17,500`,
# `$<<35*500=17500>>17 500`, `<<18-36=-18>>18`. The shown number may group its thousands
# with spaces; it ends where a number ends (`<<1/2=0.5>>1/2` shows a fraction, not 1).
_ANNOTATED_RE = re.compile(
    r"<<(?P<expr>[^<>=]*)=\s*(?P<result>-?\d+(?:\.\d+)?)\s*>>[ \t]*\$?"
    r"(?P<shown>-?(?:\d{1,3}(?: \d{3})+|\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)?"
    r"(?P<cut>[\d%/:^]|[.,]\d)?"
)


def _sources(step_text: str) -> list[tuple[ClaimSource, str]]:
    """The texts to read claims from: the prose without its calculator annotations, each
    annotation, and `expr = shown` where the result shown after an annotation is not the
    annotation's (the shown number is the writer's claim too)."""
    annotations = GSM8K_RE.findall(step_text)
    if not annotations:
        return [("text", step_text)]
    shown_claims: list[tuple[ClaimSource, str]] = []

    def strip(match: re.Match[str]) -> str:
        after = match.group()[match.group().index(">>") + 2 :]
        shown = _shown_number(match)
        if shown is None:
            return " " + after
        result = Fraction(match["result"])
        value = Fraction(shown)
        if value == -result != 0:
            return " "  # `<<18-36=-18>>18 less`: the magnitude, its sign said in words
        if value != result and not _rounds(value, match["result"], shown):
            shown_claims.append(("gsm8k", f"{match['expr']} = {shown}"))
        return " " + after

    plain = GSM8K_RE.sub(" ", _ANNOTATED_RE.sub(strip, step_text))
    return [("text", plain), *(("gsm8k", a) for a in annotations), *shown_claims]


def _shown_number(match: re.Match[str]) -> str | None:
    """The number shown after an annotation, separators dropped, or None when none is
    shown or it goes on as something else (`1/2`, `50%`, `3:45`). Spaces group thousands
    only when the grouped number has as many digits as the result (`17 500` for 17500,
    but `6 100-meter races` after `<<2*3=6>>` shows 6)."""
    shown, result = match["shown"], match["result"]
    if shown is None:
        return None
    if " " in shown:
        grouped = shown.replace(" ", "")
        if _whole_digits(grouped) == _whole_digits(result):
            return None if match["cut"] else grouped
        return shown.split(" ")[0]
    return None if match["cut"] else shown.replace(",", "")


def _whole_digits(number: str) -> int:
    return len(number.lstrip("-").split(".")[0])


def _rounds(value: Fraction, result: str, shown: str) -> bool:
    """Whether a shown number is the annotation's fractional result rounded or cut to the
    places shown (`<<100/3=33.33>>33`, `<<10/3=3.3333>>3.33`)."""
    if "." not in result:
        return False
    places = len(shown.split(".")[1]) if "." in shown else 0
    return abs(value - Fraction(result)) < Fraction(1, 10**places)


def find_claims(step_text: str) -> list[Claim]:
    """The explicit arithmetic equalities in a step, in order, without duplicates.

    >>> [c.text for c in find_claims("She has 16 - 3 - 4 = 9 eggs, so x = 5.")]
    ['16 - 3 - 4 = 9']
    """
    return read_claims(step_text).claims
