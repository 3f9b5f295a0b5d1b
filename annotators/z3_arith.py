"""Label each step by checking the explicit arithmetic claims in it (`16 - 3 - 4 = 9`).

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

from __future__ import annotations

import math
import operator
import re
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Literal, Sequence, Union

from pydantic import Field

from annotators.base import AnnotationInput, AnnotationOutput, Annotator, Evidence
from schemas.config import Config as StrictConfig
from schemas.records import Verdict

DEFAULT_TIMEOUT_MS = 2000
MAX_EXPONENT = 1000  # |n| in a^n; beyond it the claim is unknown
MAX_RESULT_BITS = 100_000  # ~30k digits: larger powers are not worth computing
MAX_ROOT_INDEX = 64
MAX_Z3_POWER = 64  # powers of irrational values are expanded into products for Z3
MAX_SIDE_TOKENS = 64  # how far left of an `=` a claim's left side may start
MAX_DEPTH = 64  # parser nesting (parentheses, signs, powers)
MAX_LISTED = 5  # claims named in a "correct" reason

# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Num:
    """A number as written: `1,250`, `$1.50` (decimals=2), `25%` (value 1/4, percent)."""

    value: Fraction
    decimals: int = 0
    percent: bool = False


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


Expr = Union[Num, Neg, BinOp, Root]
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

    @property
    def text(self) -> str:
        return f"{self.lhs_text} = {self.rhs_text}"


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: Verdict
    reason: str
    summary: str = ""  # short form for a step's reason: "10 / 3 = 3.33 (rounded)"


class _Undecidable(Exception):
    """The claim cannot be decided (division by zero, huge power, solver gave up)."""


class _Irrational(Exception):
    """A root is not rational: the exact check needs Z3."""


class _NoParse(Exception):
    pass


# --------------------------------------------------------------------------- normalisation

_TAINT = "\ue000"  # stands for anything non-numeric in an expression (\pi, \log, ±)
_GSM8K_RE = re.compile(r"<<([^<>]*)>>")

_LATEX_CMD_RE = re.compile(r"\\([A-Za-z]+|.)", re.S)
_LATEX_DEGREES_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?")
_SQRT_INDEX_RE = re.compile(r"\s*\[\s*(\d+)\s*\]")
_FRAC_CMDS = frozenset({"frac", "dfrac", "tfrac", "cfrac"})
_TEXT_CMDS = frozenset(
    "text textbf textit textrm textsf texttt mathrm mathbf mathit mathsf mbox emph boxed "
    "fbox operatorname underline overline".split()
)
_LATEX_SIMPLE: dict[str, str] = {
    **dict.fromkeys("times cdot ast cdotp".split(), " * "),
    "div": " / ",
    # Sizing, spacing and math delimiters (`\left(`, `\,`, `\[`, `\$`) carry no arithmetic.
    **dict.fromkeys(
        "left right big Big bigg Bigg bigl bigr Bigl Bigr displaystyle textstyle limits "
        "nolimits quad qquad cdots ldots dots , ; : ! > ( ) [ ] $ & ~".split() + [" "],
        " ",
    ),
    "%": "%",
    "{": "(",
    "}": ")",
    "\\": "\n",
    # Relations other than `=` end a claim (a `;` is a clause break).
    **dict.fromkeys(
        "le leq ge geq lt gt ne neq approx sim simeq equiv cong to rightarrow Rightarrow "
        "implies iff Longrightarrow longrightarrow mapsto propto leqslant geqslant".split(),
        " ; ",
    ),
    **dict.fromkeys(["circ", "degree"], " degrees "),
}

_CHAR_MAP = str.maketrans(
    {
        **dict.fromkeys("\u2212\u2012\ufe63\uff0d", "-"),
        **dict.fromkeys("\u00d7\u2715\u2716\u22c5\u00b7\u2219\u2217", "*"),
        **dict.fromkeys("\u00f7\u2215\u2044", "/"),
        "\uff1d": "=",
        **dict.fromkeys("\u00a0\u2009\u202f\u2007", " "),
        "\u200b": "",
        **dict.fromkeys("\u2018\u2019", "'"),
        **dict.fromkeys("\u201c\u201d", '"'),
        "\u00b0": " degrees ",
        # Currency signs and LaTeX math delimiters alike carry no arithmetic.
        **dict.fromkeys("$€£¥₹", ""),
        "&": " ",
        **dict.fromkeys("±∓∞", _TAINT),
    }
)
_SUPERSCRIPT_RE = re.compile(r"⁻?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
_SUPERSCRIPT_MAP = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_VULGAR = {
    "½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅖": "2/5",
    "⅗": "3/5", "⅘": "4/5", "⅙": "1/6", "⅚": "5/6", "⅛": "1/8", "⅜": "3/8", "⅝": "5/8",
    "⅞": "7/8",
}  # fmt: skip
_VULGAR_RE = re.compile(r"(\d*)[ ]?([" + "".join(_VULGAR) + "])")
# An en dash between numbers is a minus; elsewhere it is punctuation.
_EN_DASH_RE = re.compile(r"(?<=[\d)])(\s*)\u2013(?=\s*[\d(])")
_BULLET_RE = re.compile(r"^[ \t]*[-*+•][ \t]+", re.M)
# "2 1/2 hours" is a mixed number (proper fractions only).
_MIXED_RE = re.compile(r"(?<![\d.,/^])(\d+)[ ]+(\d+)/(\d+)(?![\d.,/])")


def _brace_arg(s: str, i: int) -> tuple[str, int] | None:
    """The LaTeX argument at s[i:]: `{...}` (balanced) or one character / command."""
    while i < len(s) and s[i].isspace():
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        depth = 0
        for k in range(i, len(s)):
            if s[k] == "{":
                depth += 1
            elif s[k] == "}":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : k], k + 1
        return None
    if s[i] == "\\":
        m = _LATEX_CMD_RE.match(s, i)
        return (m.group(), m.end()) if m else None
    if s[i].isalnum():
        return s[i], i + 1
    return None


def _latex(s: str) -> str:
    """Rewrite the LaTeX that matters for arithmetic into plain text."""
    out: list[str] = []
    i = 0
    while (m := _LATEX_CMD_RE.search(s, i)) is not None:
        before = s[i : m.start()]
        name, j = m.group(1), m.end()
        if name in _FRAC_CMDS:
            a = _brace_arg(s, j)
            b = _brace_arg(s, a[1]) if a else None
            if a is None or b is None:
                out += [before, _TAINT]
                i = j
                continue
            num, den = _latex(a[0]), _latex(b[0])
            frac = f"({num}/{den})" if num.isdecimal() and den.isdecimal() else f"(({num})/({den}))"
            whole = re.search(r"(?<![\d.])(\d+)\s*$", before)
            if whole and a[0].isdecimal() and b[0].isdecimal() and int(a[0]) < int(b[0]):
                # `2\frac{1}{2}` is the mixed number 2 1/2, not 2 * 1/2.
                before, frac = before[: whole.start()], f"({whole.group(1)}+{frac})"
            out += [before, frac]
            i = b[1]
        elif name == "sqrt":
            index = _SQRT_INDEX_RE.match(s, j)
            n = int(index.group(1)) if index else 2
            arg = _brace_arg(s, index.end() if index else j)
            symbol = {2: "√", 3: "∛", 4: "∜"}.get(n, _TAINT)
            if arg is None:
                out += [before, _TAINT]
                i = j
            else:
                out += [before, f"{symbol}({_latex(arg[0])})"]
                i = arg[1]
        elif name in _TEXT_CMDS:
            arg = _brace_arg(s, j)
            out += [before, f" {_latex(arg[0])}" if arg else " "]
            i = arg[1] if arg else j
        elif name in _LATEX_SIMPLE:
            out += [before, _LATEX_SIMPLE[name]]
            i = j
        else:
            # \pi, \log, \binom{5}{2}, ...: the command and its arguments are not arithmetic.
            while j < len(s) and s[j] == "{" and (arg := _brace_arg(s, j)) is not None:
                j = arg[1]
            out += [before, _TAINT]
            i = j
    out.append(s[i:])
    return "".join(out)


def _mixed(m: re.Match[str]) -> str:
    whole, num, den = m.groups()
    if 0 < int(num) < int(den):
        return f"({whole}+{num}/{den})"
    return m.group()


def _vulgar(m: re.Match[str]) -> str:
    whole, frac = m.groups()
    return f"({whole}+{_VULGAR[frac]})" if whole else f"({_VULGAR[frac]})"


def _normalize(text: str) -> str:
    text = text.replace("{,}", ",")  # LaTeX thousands separator: 1{,}000
    if "\\" in text:
        text = _latex(_LATEX_DEGREES_RE.sub(" degrees ", text))
    text = text.translate(_CHAR_MAP)
    text = _SUPERSCRIPT_RE.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPT_MAP), text)
    text = _VULGAR_RE.sub(_vulgar, text)
    text = _EN_DASH_RE.sub(r"\1-", text)
    text = _BULLET_RE.sub("", text)
    return _MIXED_RE.sub(_mixed, text)


# --------------------------------------------------------------------------- tokens

NUM, OP, EQ, LP, RP, ROOT, WORD, VAR, TAINT, BREAK = (
    "num op eq lp rp root word var taint break".split()
)
_OPERAND_START = (NUM, LP, ROOT)

_TOKEN_RE = re.compile(
    r"""
    (?P<space>[^\S\n]+)
    |(?P<date>\d{4}-[01]\d-[0-3]\d(?!\d)|\d{1,2}/\d{1,2}/\d{4}(?!\d))
    |(?P<time>\d+(?::\d+)+)
    |(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)
    |(?P<pct>%|(?i:per\s?cent)\b)
    |(?P<word>[^\W\d_]+(?:'[^\W\d_]+)*)
    |(?P<op>\*\*|[-+*/^])
    |(?P<cmp><=|>=|!=|=>|=<|[<>≤≥≠≈~])
    |(?P<eq>==?)
    |(?P<lp>[(\[{])
    |(?P<rp>[)\]}])
    |(?P<root>[√∛∜])
    |(?P<brk>[\n,.;:?!"…—–#•→⇒'])
    |(?P<other>.)
    """,
    re.VERBOSE,
)
_GROUP_KIND = {
    "date": TAINT, "time": TAINT, "num": NUM, "word": WORD, "op": OP, "cmp": BREAK,
    "eq": EQ, "lp": LP, "rp": RP, "root": ROOT, "brk": BREAK, "other": TAINT,
}  # fmt: skip
_ROOT_INDEX = {"√": 2, "∛": 3, "∜": 4}
# Units written without a space (`12km`); other letters glued to a number are
# variables or ordinals (`2x`, `3rd`, `5pm`).
_ATTACHED_UNITS = frozenset(
    "km kg cm mm mg ml lb lbs oz ft hr hrs min mins sec secs mph kph kmh yd yds mi gal".split()
)
_OP_WORDS = {"times": "*", "plus": "+", "minus": "-", "of": "*"}
_BY_WORDS = {"divided": "/", "multiplied": "*"}


@dataclass(slots=True, eq=False)
class _Tok:
    kind: str
    text: str
    start: int
    end: int
    space: bool  # whitespace right before it
    num: Num | None = None
    op: str = ""
    low: str = ""


def _number(text: str) -> Num:
    digits = text.replace(",", "")
    if "." not in digits:
        return Num(Fraction(int(digits)))
    whole, _, frac = digits.partition(".")
    return Num(Fraction(int(whole + frac), 10 ** len(frac)), len(frac))


def _tokenize(text: str) -> list[list[_Tok]]:
    """Tokens of `text`, split into clauses at sentence punctuation and line ends."""
    toks: list[_Tok] = []
    space = True
    for m in _TOKEN_RE.finditer(text):
        group, s = m.lastgroup, m.group()
        if group == "space":
            space = True
            continue
        if group == "pct":
            last = toks[-1] if toks else None
            if last is not None and last.kind == NUM and last.num and not last.num.percent:
                n = last.num
                last.num, last.end = Num(n.value / 100, n.decimals, True), m.end()
            else:
                toks.append(_Tok(TAINT, s, m.start(), m.end(), space))
            space = False
            continue
        assert group is not None
        tok = _Tok(_GROUP_KIND[group], s, m.start(), m.end(), space)
        space = False
        if group == "num":
            tok.num = _number(s)
        elif group == "op":
            tok.op = "^" if s == "**" else s
        elif group == "root":
            tok.op = s
        elif group == "word":
            tok.low = s.lower()
            if tok.low == "sqrt":
                tok.kind, tok.op = ROOT, "√"
        toks.append(tok)
    _classify(toks)
    clauses: list[list[_Tok]] = []
    current: list[_Tok] = []
    for tok in toks:
        if tok.kind == BREAK:
            if current:
                clauses.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        clauses.append(current)
    return clauses


def _classify(toks: list[_Tok]) -> None:
    """Decide, from neighbours, which letters are `x`-times, units or variables, and
    which asterisks are Markdown emphasis rather than multiplication."""
    n = len(toks)
    for k, tok in enumerate(toks):
        prev = toks[k - 1] if k else None
        nxt = toks[k + 1] if k + 1 < n else None
        if tok.kind == WORD:
            tok.kind = _word_kind(tok, prev, nxt, toks[k - 2] if k > 1 else None)
            if tok.kind == OP:
                tok.op = "*"
        elif tok.kind == OP and tok.text in ("*", "**") and _is_markup(tok, prev, nxt):
            tok.kind = BREAK


def _word_kind(tok: _Tok, prev: _Tok | None, nxt: _Tok | None, before: _Tok | None) -> str:
    low = tok.low
    if (
        low == "x"
        and prev is not None
        and nxt is not None
        and nxt.kind in _OPERAND_START
        and (prev.kind in (NUM, RP) or (prev.kind == WORD and tok.space and nxt.space))
    ):
        return OP  # 12 x 7, 12x7, 5 apples x 3
    if prev is not None and prev.kind == NUM and not tok.space:
        return WORD if low in _ATTACHED_UNITS else VAR
    if nxt is not None and nxt.kind in (NUM, LP) and not nxt.space:
        return VAR  # x2, a1, and function names: abs(-3 - 2), log(100)
    if len(tok.text) == 1:
        # "5 a day": an article inside a unit phrase; any other lone letter is a variable.
        if low == "a" and nxt is not None and nxt.kind == WORD and len(nxt.text) > 1:
            return WORD
        if prev is not None and prev.op == "/" and not tok.space and before and before.kind == WORD:
            return WORD  # km/h, m/s
        return VAR
    return WORD


def _is_markup(tok: _Tok, prev: _Tok | None, nxt: _Tok | None) -> bool:
    if prev is None or prev.kind == BREAK or nxt is None or nxt.kind in (BREAK, EQ, RP, WORD):
        return True
    # `**bold**` hugs its text on one side only; `2**3` and `2 ** 3` are powers.
    return tok.text == "**" and tok.space != nxt.space


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over toks[pos:end]; unit words after a value are skipped."""

    __slots__ = ("toks", "pos", "end", "depth", "units")

    def __init__(self, toks: list[_Tok], start: int, end: int) -> None:
        self.toks, self.pos, self.end = toks, start, end
        self.depth = 0
        self.units: set[str] = set()

    def peek(self, k: int = 0) -> _Tok | None:
        i = self.pos + k
        return self.toks[i] if i < self.end else None

    def _operand_at(self, k: int) -> bool:
        tok = self.peek(k)
        return tok is not None and tok.kind in _OPERAND_START

    def _op_word(self) -> tuple[str, int] | None:
        """(operator, tokens) when the next words are an operator before an operand."""
        tok = self.peek()
        if tok is None or tok.kind != WORD:
            return None
        if tok.low in _OP_WORDS and self._operand_at(1):
            return _OP_WORDS[tok.low], 1
        after = self.peek(1)
        if tok.low in _BY_WORDS and after and after.low == "by" and self._operand_at(2):
            return _BY_WORDS[tok.low], 2
        return None

    def expr(self, first: Expr | None = None) -> Expr:
        left = self.term(first)
        while (tok := self.peek()) is not None:
            if tok.kind == OP and tok.op in "+-":
                op, width = tok.op, 1
            elif (word := self._op_word()) is not None and word[0] in "+-":
                op, width = word
            else:
                break
            self.pos += width
            left = BinOp(op, left, self.term())
        return left

    def term(self, first: Expr | None = None) -> Expr:
        left = first if first is not None else self.unary()
        while (tok := self.peek()) is not None:
            prev = self.toks[self.pos - 1]
            if tok.kind == OP and tok.op in "*/":
                op, width = tok.op, 1
            elif (word := self._op_word()) is not None and word[0] in "*/":
                op, width = word
                # "of" multiplies only after a share: 25% of 80, 3/4 of 20.
                if tok.low == "of" and not _is_share(left):
                    break
            elif (tok.kind == LP and (prev.kind == RP or (prev.kind == NUM and not tok.space))) or (
                tok.kind == ROOT and prev.kind in (NUM, RP)
            ):
                op, width = "*", 0  # 2(3 + 4), (2)(3), 2√3
            else:
                break
            self.pos += width
            left = BinOp(op, left, self.unary())
        return left

    def unary(self) -> Expr:
        tok = self.peek()
        if tok is not None and tok.kind == OP and tok.op in "+-":
            self.pos += 1
            self._enter()
            operand = self.unary()
            self.depth -= 1
            return Neg(operand) if tok.op == "-" else operand
        return self.power()

    def power(self) -> Expr:
        base = self.atom()
        tok = self.peek()
        if tok is not None and tok.kind == OP and tok.op == "^":
            self.pos += 1
            self._enter()
            base = BinOp("^", base, self.unary())
            self.depth -= 1
        self._skip_units()
        return base

    def atom(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise _NoParse
        if tok.kind == NUM:
            self.pos += 1
            assert tok.num is not None
            return tok.num
        if tok.kind == LP:
            self.pos += 1
            self._enter()
            inner = self.expr()
            close = self.peek()
            if close is None or close.kind != RP:
                raise _NoParse
            self.pos += 1
            self.depth -= 1
            return inner
        if tok.kind == ROOT:
            self.pos += 1
            self._enter()
            operand = self.atom()
            self.depth -= 1
            return Root(_ROOT_INDEX[tok.op], operand)
        raise _NoParse

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _NoParse

    def _skip_units(self) -> None:
        """Skip `apples`, `minutes/hour`, `per day`, `(eaten)` after a value."""
        while (tok := self.peek()) is not None:
            if tok.kind == WORD and self._op_word() is None:
                self.units.add(_stem(tok.low))
                self.pos += 1
                power, exponent = self.peek(), self.peek(1)
                if power and power.op == "^" and exponent and exponent.kind == NUM:
                    self.pos += 2  # cm^2
            elif tok.kind == OP and tok.op == "/" and (w := self.peek(1)) and w.kind == WORD:
                self.units.add(_stem(w.low))
                self.pos += 2
            elif tok.kind == LP:
                k = self.pos + 1
                while k < self.end and self.toks[k].kind == WORD:
                    k += 1
                if k == self.pos + 1 or k >= self.end or self.toks[k].kind != RP:
                    return
                self.pos = k + 1
            else:
                return


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _is_share(e: Expr) -> bool:
    return (isinstance(e, Num) and e.percent) or (isinstance(e, BinOp) and e.op == "/")


# --------------------------------------------------------------------------- claims


@dataclass(slots=True)
class _Side:
    expr: Expr
    text: str
    units: frozenset[str]
    continuation: bool = False


def _side_text(text: str, toks: list[_Tok], i: int, j: int, trim: bool) -> str:
    last = j - 1
    while trim and last > i and toks[last].kind in (WORD, OP):
        last -= 1  # a right side "9 eggs left for her" shows as "9", "40 hrs/week" as "40"
    return " ".join(text[toks[i].start : toks[last].end].split())


def _make_side(
    text: str,
    toks: list[_Tok],
    span: tuple[int, int],
    parser: _Parser,
    expr: Expr,
    first: _Side | None,
    trim: bool = False,
) -> _Side:
    shown = _side_text(text, toks, *span, trim)
    if first is not None:
        return _Side(expr, f"{first.text} {shown}", frozenset(parser.units), True)
    return _Side(expr, shown, frozenset(parser.units))


def _parse_full(text: str, toks: list[_Tok], i: int, j: int, first: _Side | None) -> _Side | None:
    parser = _Parser(toks, i, j)
    try:
        expr = parser.expr(first.expr if first else None)
    except _NoParse:
        return None
    return _make_side(text, toks, (i, j), parser, expr, first) if parser.pos == j else None


def _parse_prefix(
    text: str, toks: list[_Tok], i: int, j: int, first: _Side | None
) -> _Side | None:
    """The longest expression at the start of toks[i:j] that ends at a clean boundary."""
    parser = _Parser(toks, i, j)
    try:
        expr = parser.expr(first.expr if first else None)
    except _NoParse:
        return None
    end = parser.pos
    if end < j:
        nxt, last = toks[end], toks[end - 1]
        trailing_unit = nxt.kind == VAR and nxt.space and end + 1 == j == len(toks)  # "= 14 m"
        clean = nxt.kind in (WORD, LP, RP) or (nxt.kind == NUM and last.kind == WORD)
        if not (clean or trailing_unit):
            return None  # "= 3 * 2x", "= 9 - x": the expression goes on with a variable
    return _make_side(text, toks, (i, end), parser, expr, first, trim=True)


def _parse_suffix(text: str, toks: list[_Tok], i: int, j: int) -> _Side | None:
    """The longest expression ending toks[i:j] that starts at a clean boundary."""
    for s in range(max(i, j - MAX_SIDE_TOKENS), j):
        tok = toks[s]
        if tok.kind == OP and tok.op == "-":
            # "-16 + 20" is a negative number; "eggs left - 16 - 3" uses a dash.
            if s + 1 >= j or toks[s + 1].space:
                continue
        elif tok.kind not in _OPERAND_START:
            continue
        if s > 0 and not _clean_start(toks, s):
            continue
        side = _parse_full(text, toks, s, j, None)
        if side is not None:
            return side
    return None


def _clean_start(toks: list[_Tok], s: int) -> bool:
    """Whether an expression may start at toks[s]: not right after an operator, a
    variable or another number (`2x + 3`, `x - 3`, `2 1/2`)."""
    prev = toks[s - 1]
    if prev.kind == WORD:
        return prev.low not in _OP_WORDS and prev.low != "by"
    if prev.kind == LP:
        return True
    if prev.kind == OP and prev.op == "-" and prev.space and toks[s].space:
        return s == 1 or toks[s - 2].kind == WORD  # a dash: "eggs left - 16 - 3 - 4 = 9"
    if prev.kind == RP:  # a list marker opening the clause: "1) 3 + 4 = 7", "(a) 3 + 4 = 7"
        return [t.kind for t in toks[: s - 1]] in ([NUM], [VAR], [LP, NUM], [LP, VAR])
    return False


def _canon(e: Expr) -> str:
    """The expression's structure and values, regardless of how numbers were written."""
    if isinstance(e, Num):
        return str(e.value)
    if isinstance(e, Neg):
        return f"(-{_canon(e.operand)})"
    if isinstance(e, Root):
        return f"root{e.index}({_canon(e.operand)})"
    return f"({_canon(e.left)}{e.op}{_canon(e.right)})"


def _has_op(e: Expr) -> bool:
    if isinstance(e, Neg):
        return _has_op(e.operand)
    return isinstance(e, (BinOp, Root))


def _is_literal(e: Expr) -> bool:
    return isinstance(e, Num) or (isinstance(e, Neg) and isinstance(e.operand, Num))


def _lead(e: Expr) -> Num | None:
    """The first number of `8 + 2` (a running total writes the previous result first)."""
    if not (isinstance(e, BinOp) and e.op in "+-*/"):
        return None
    while isinstance(e, BinOp) and e.op in "+-*/":
        e = e.left
    return e if isinstance(e, Num) else None


def _pairs(chain: list[_Side], source: ClaimSource) -> Iterator[Claim]:
    for k in range(len(chain) - 1):
        left, right = chain[k], chain[k + 1]
        if right.continuation or not (_has_op(left.expr) or _has_op(right.expr)):
            continue  # `1 hour = 60 minutes`, `25% = 0.25`: bare numbers are no claim
        followed = k + 2 < len(chain)
        lead = _lead(right.expr) if followed or _is_literal(left.expr) else None
        yield Claim(
            left.text, right.text, left.expr, right.expr, source, lead, left.units, right.units
        )


def _clause_claims(text: str, toks: list[_Tok], source: ClaimSource) -> Iterator[Claim]:
    eqs = [k for k, tok in enumerate(toks) if tok.kind == EQ]
    if not eqs:
        return
    bounds = [-1, *eqs, len(toks)]
    last = len(bounds) - 2
    chain: list[_Side] = []
    for k in range(last + 1):
        i, j = bounds[k] + 1, bounds[k + 1]
        if k == 0:
            side = _parse_suffix(text, toks, i, j) if i < j else None
            chain = [side] if side else []
            continue
        if i == j:
            yield from _pairs(chain, source)
            chain = []
            continue
        first = chain[-1] if chain and toks[i].kind == OP and toks[i].op in "+*/" else None
        if k == last:
            side = _parse_prefix(text, toks, i, j, first)
            if side is not None and chain:
                chain.append(side)
            yield from _pairs(chain, source)
            return
        side = _parse_full(text, toks, i, j, first)
        if side is not None:
            chain.append(side)
            continue
        # "= 12 and 12 / 2 = 6": one chain ends inside this side and another begins.
        head = _parse_prefix(text, toks, i, j, first)
        if head is not None and chain:
            chain.append(head)
        yield from _pairs(chain, source)
        tail = _parse_suffix(text, toks, i, j)
        chain = [tail] if tail else []


def _claims_in(text: str, source: ClaimSource) -> Iterator[Claim]:
    normalized = _normalize(text)
    # A line end always ends a clause: only lines with an `=` need tokenizing.
    for line in normalized.split("\n"):
        if "=" in line:
            for clause in _tokenize(line):
                yield from _clause_claims(line, clause, source)


def find_claims(step_text: str) -> list[Claim]:
    """The explicit arithmetic equalities in a step, in order, without duplicates.

    >>> [c.text for c in find_claims("She has 16 - 3 - 4 = 9 eggs, so x = 5.")]
    ['16 - 3 - 4 = 9']
    """
    annotations = _GSM8K_RE.findall(step_text)
    plain = _GSM8K_RE.sub(" ", step_text) if annotations else step_text
    found: list[Claim] = []
    seen: set[str] = set()
    sources: list[tuple[ClaimSource, str]] = [("text", plain)]
    sources += [("gsm8k", annotation) for annotation in annotations]
    for source, chunk in sources:
        for claim in _claims_in(chunk, source):
            # `80,000+50,000 = $130,000` and its annotation `<<80000+50000=130000>>` are one claim.
            key = f"{_canon(claim.lhs)}={_canon(claim.rhs)}"
            if key not in seen:
                seen.add(key)
                found.append(claim)
    return found


# --------------------------------------------------------------------------- exact values


def _iroot_floor(n: int, k: int) -> int:
    """floor(n ** (1/k)) for an integer n >= 0, exactly."""
    if n < 2:
        return n
    if k == 2:
        return math.isqrt(n)
    x = 1 << -(-n.bit_length() // k)  # >= the root; Newton's method descends from above
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _iroot(n: int, k: int) -> int | None:
    """The exact k-th root of n >= 0, or None."""
    r = _iroot_floor(n, k)
    return r if r**k == n else None


def _root(v: Fraction, k: int) -> Fraction:
    if k > MAX_ROOT_INDEX:
        raise _Undecidable("root index too large")
    if v < 0:
        if k % 2 == 0:
            raise _Undecidable("even root of a negative number")
        return -_root(-v, k)
    num, den = _iroot(v.numerator, k), _iroot(v.denominator, k)
    if num is None or den is None:
        raise _Irrational
    return Fraction(num, den)


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    n = exponent.numerator
    if abs(n) > MAX_EXPONENT:
        raise _Undecidable("exponent too large")
    if base == 0 and n < 0:
        raise _Undecidable("division by zero")
    size = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(n)
    if size > MAX_RESULT_BITS:
        raise _Undecidable("result too large")
    value = base**n
    return value if exponent.denominator == 1 else _root(value, exponent.denominator)


# One dispatch for + - * shared by the exact, float and Z3 evaluators.
_RING_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _value(e: Expr) -> Fraction:
    """Exact value; raises _Irrational (needs Z3) or _Undecidable."""
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Neg):
        return -_value(e.operand)
    if isinstance(e, Root):
        return _root(_value(e.operand), e.index)
    a, b = _value(e.left), _value(e.right)
    if e.op in _RING_OPS:
        if e.op != "*":
            _check_percent_sum(e)
        return _RING_OPS[e.op](a, b)
    if e.op == "/":
        if b == 0:
            raise _Undecidable("division by zero")
        return a / b
    return _power(a, b)


def _check_percent_sum(e: BinOp) -> None:
    # "$50 + 8% = $54" means 50 * 1.08, not 50.08: too ambiguous to call either way.
    left = isinstance(e.left, Num) and e.left.percent
    right = isinstance(e.right, Num) and e.right.percent
    if left != right:
        raise _Undecidable("adds a percentage to a plain number")


def _tolerance(e: Expr) -> Fraction | None:
    """Half a unit in the last written decimal place of a bare decimal literal."""
    if isinstance(e, Neg):
        e = e.operand
    if isinstance(e, Num) and e.decimals > 0:
        tol = Fraction(1, 2 * 10**e.decimals)
        return tol / 100 if e.percent else tol
    return None


def _approx(e: Expr) -> float:
    try:
        if isinstance(e, Num):
            return float(e.value)
        if isinstance(e, Neg):
            return -_approx(e.operand)
        if isinstance(e, Root):
            v = _approx(e.operand)
            return math.copysign(abs(v) ** (1 / e.index), v)
        a, b = _approx(e.left), _approx(e.right)
        if e.op in _RING_OPS:
            return _RING_OPS[e.op](a, b)
        value = a / b if e.op == "/" else a**b
        return value if isinstance(value, float) else math.nan  # (-8) ** (1/3) is complex
    except (OverflowError, ZeroDivisionError, ValueError):
        return math.nan


def _fmt(v: Fraction) -> str:
    if max(v.numerator.bit_length(), v.denominator.bit_length()) > 130:
        return f"a number of about {_magnitude(v)}"
    if v.denominator == 1:
        return str(v.numerator)
    d, twos, fives = v.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    places = max(twos, fives)
    if d == 1 and places <= 12:
        digits = str(abs(v.numerator) * 10**places // v.denominator).rjust(places + 1, "0")
        return f"{'-' if v < 0 else ''}{digits[:-places]}.{digits[-places:]}"
    return f"{v.numerator}/{v.denominator} (≈ {float(v):.6g})"


def _magnitude(v: Fraction) -> str:
    """`1e+300`-style size of a huge or tiny rational, without overflowing a float."""
    if v == 0:
        return "0"
    exponent = math.log10(abs(v.numerator)) - math.log10(v.denominator)
    return f"{'-' if v < 0 else ''}1e{math.floor(exponent):+d}"


def _show(e: Expr) -> str:
    """`= 84`, `≈ 1.41421` (the value of a side, for reasons)."""
    try:
        return f"= {_fmt(_value(e))}"
    except _Irrational:
        return f"≈ {_approx(e):.6g}"
    except _Undecidable as exc:
        return f"is undefined ({exc})"


# --------------------------------------------------------------------------- bounds (radicals)
# Irrational values are bracketed by rigorous rational bounds first: that settles
# `\sqrt{2} = 1.414` and `\sqrt{2} = 1.5` at once. Only when the bounds cannot separate
# the sides (they may be exactly equal: `\sqrt{8} = 2\sqrt{2}`) does Z3 decide.

_ROOT_SCALE = 1 << 100  # root bounds are within 2^-100


class _Loose(Exception):
    """Bounds cannot decide; ask Z3."""


Bounds = tuple[Fraction, Fraction]


def _root_floor(v: Fraction, k: int) -> Fraction:
    """A lower bound of v^(1/k) (v >= 0) within 2^-100."""
    scaled = v.numerator * _ROOT_SCALE**k // v.denominator
    return Fraction(_iroot_floor(scaled, k), _ROOT_SCALE)


def _root_bounds(lo: Fraction, hi: Fraction, k: int) -> Bounds:
    if k > MAX_ROOT_INDEX:
        raise _Undecidable("root index too large")
    if k % 2 == 0 and hi < 0:
        raise _Undecidable("even root of a negative number")
    if lo < 0:
        if k % 2 == 0:
            raise _Loose  # the argument may be negative: Z3 checks
        # Odd roots are increasing and odd: bracket -root(-x) from the other side.
        upper = -_root_floor(-lo, k) if hi < 0 else _root_floor(hi, k) + Fraction(1, _ROOT_SCALE)
        return -_root_floor(-lo, k) - Fraction(1, _ROOT_SCALE), upper
    return _root_floor(lo, k), _root_floor(hi, k) + Fraction(1, _ROOT_SCALE)


def _pow_bounds(lo: Fraction, hi: Fraction, n: int) -> Bounds:
    if n < 0:
        if lo <= 0 <= hi:
            raise _Loose
        lo, hi = _pow_bounds(lo, hi, -n)
        return 1 / hi, 1 / lo
    ends = sorted((lo**n, hi**n))
    if n % 2 == 0 and lo < 0 < hi:
        return Fraction(0), ends[1]
    return ends[0], ends[1]


def _bounds(e: Expr) -> Bounds:
    """Rigorous lower and upper bounds of an expression's value."""
    try:
        v = _value(e)
        return v, v
    except _Irrational:
        pass
    if isinstance(e, Neg):
        lo, hi = _bounds(e.operand)
        return -hi, -lo
    if isinstance(e, Root):
        return _root_bounds(*_bounds(e.operand), e.index)
    assert isinstance(e, BinOp)
    if e.op == "^":
        try:
            exponent = _value(e.right)
        except _Irrational:
            raise _Undecidable("irrational exponent") from None
        if abs(exponent.numerator) > MAX_Z3_POWER:
            raise _Loose
        lo, hi = _pow_bounds(*_bounds(e.left), exponent.numerator)
        return (lo, hi) if exponent.denominator == 1 else _root_bounds(lo, hi, exponent.denominator)
    (a, b), (c, d) = _bounds(e.left), _bounds(e.right)
    if e.op == "+":
        return a + c, b + d
    if e.op == "-":
        return a - d, b - c
    if e.op == "/":
        if c <= 0 <= d:
            raise _Loose  # the divisor may be zero
        c, d = 1 / d, 1 / c
    products = (a * c, a * d, b * c, b * d)
    return min(products), max(products)


def _compare_bounds(a: Expr, b: Expr, tol: Fraction | None) -> tuple[Verdict, str]:
    (a_lo, a_hi), (b_lo, b_hi) = _bounds(a), _bounds(b)
    low, high = a_lo - b_hi, a_hi - b_lo  # a - b lies in [low, high]
    margin = tol or Fraction(0)
    if tol is not None and -tol <= low and high <= tol:
        return "correct", " (rounded)"
    if low > margin or high < -margin:
        return "incorrect", ""
    raise _Loose


# --------------------------------------------------------------------------- Z3 (radicals)


_Z3_LOCAL = threading.local()


class _Z3Builder:
    """Real-valued Z3 terms for expressions with irrational roots: each root is a fresh
    variable r with r^k = arg (and r >= 0 for even k). All checks share one deadline."""

    def __init__(self, z3: Any, timeout_ms: int) -> None:
        # Z3 is thread-safe only with one context per thread.
        if not hasattr(_Z3_LOCAL, "context"):
            _Z3_LOCAL.context = z3.Context()
        self.z3, self.ctx, self.count = z3, _Z3_LOCAL.context, 0
        self.solver = z3.Solver(ctx=self.ctx)
        self.deadline = time.monotonic() + timeout_ms / 1000

    def check(self, condition: Any) -> Any:
        """sat / unsat / unknown for the facts so far plus `condition`."""
        left_ms = int((self.deadline - time.monotonic()) * 1000)
        if left_ms < 1:
            return self.z3.unknown
        self.solver.set("timeout", left_ms)
        self.solver.push()
        self.solver.add(condition)
        try:
            return self.solver.check()
        finally:
            self.solver.pop()

    def real(self, v: Fraction) -> Any:
        return self.z3.RealVal(f"{v.numerator}/{v.denominator}", self.ctx)

    def build(self, e: Expr) -> Any:
        try:
            return self.real(_value(e))  # rational subterms stay exact constants
        except _Irrational:
            pass
        if isinstance(e, Neg):
            return -self.build(e.operand)
        if isinstance(e, Root):
            return self.root(e.operand, e.index)
        assert isinstance(e, BinOp)
        if e.op == "^":
            return self.power(e)
        a, b = self.build(e.left), self.build(e.right)
        if e.op in _RING_OPS:
            return _RING_OPS[e.op](a, b)
        self.require(b != 0, "division by zero")
        return a / b

    def root(self, operand: Expr | Any, k: int) -> Any:
        if k > MAX_ROOT_INDEX:
            raise _Undecidable("root index too large")
        if isinstance(operand, (Num, Neg, BinOp, Root)):
            try:
                v = _value(operand)
                if v < 0 and k % 2 == 0:
                    raise _Undecidable("even root of a negative number")
                arg = self.real(v)
            except _Irrational:
                arg = self.build(operand)
                if k % 2 == 0:
                    self.require(arg >= 0, "even root of a negative number")
        else:
            arg = operand
            if k % 2 == 0:
                self.require(arg >= 0, "even root of a negative number")
        self.count += 1
        r = self.z3.Real(f"root{self.count}", self.ctx)
        self.solver.add(_zpow(r, k) == arg)
        if k % 2 == 0:
            self.solver.add(r >= 0)
        return r

    def power(self, e: BinOp) -> Any:
        try:
            exponent = _value(e.right)
        except _Irrational:
            raise _Undecidable("irrational exponent") from None
        p, q = exponent.numerator, exponent.denominator
        if abs(p) > MAX_Z3_POWER:
            raise _Undecidable("exponent too large")
        base = self.build(e.left)
        if p == 0:
            return self.real(Fraction(1))
        value = _zpow(base, abs(p))
        if p < 0:
            self.require(base != 0, "division by zero")
            value = 1 / value
        return value if q == 1 else self.root(value, q)

    def require(self, condition: Any, why: str) -> None:
        result = self.check(self.z3.Not(condition))
        if result != self.z3.unsat:
            raise _Undecidable(why if result == self.z3.sat else "solver gave up")


def _zpow(x: Any, n: int) -> Any:
    result = x
    for _ in range(n - 1):
        result = result * x
    return result


def _compare_z3(a: Expr, b: Expr, tol: Fraction | None, timeout_ms: int) -> tuple[Verdict, str]:
    import z3  # only irrational radicals need it; keeps the common path import-free

    builder = _Z3Builder(z3, timeout_ms)
    za, zb = builder.build(a), builder.build(b)
    result = builder.check(za != zb)
    if result == z3.unsat:
        return "correct", ""
    if result == z3.sat and tol is not None:
        t = builder.real(tol)
        result = builder.check(z3.Or(za - zb > t, zb - za > t))
        if result == z3.unsat:
            return "correct", " (rounded)"
    if result != z3.sat:
        raise _Undecidable("solver gave up")
    return "incorrect", ""


# --------------------------------------------------------------------------- checking


def _compare(a: Expr, b: Expr, rounding: bool, timeout_ms: int) -> tuple[Verdict, str]:
    """Whether a == b, or (rounding) b or a is a decimal rounding of the other."""
    tol = (_tolerance(b) or _tolerance(a)) if rounding else None
    try:
        va, vb = _value(a), _value(b)
    except _Irrational:
        try:
            return _compare_bounds(a, b, tol)
        except _Loose:
            return _compare_z3(a, b, tol, timeout_ms)
    if va == vb:
        return "correct", ""
    if tol is not None and abs(va - vb) <= tol:
        return "correct", " (rounded)"
    return "incorrect", ""


def _reads_as_conversion(claim: Claim) -> bool:
    """`2 * 60 minutes = 2 hours`: a unit conversion written as an equation."""
    if not (claim.lhs_units and claim.rhs_units) or not claim.lhs_units.isdisjoint(claim.rhs_units):
        return False
    lead = _lead(claim.lhs)
    return lead is not None and _is_literal(claim.rhs) and lead.value == _value(claim.rhs)


def check_claim(
    claim: Claim, *, rounding: bool = True, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> ClaimResult:
    """Decide one claim with exact arithmetic (Z3 for irrational roots).

    >>> check_claim(find_claims("12 x 7 = 90")[0]).reason
    '12 x 7 = 90 is false: 12 x 7 = 84'
    """
    try:
        verdict, note = _compare(claim.lhs, claim.rhs, rounding, timeout_ms)
        if verdict == "correct":
            return ClaimResult(claim, "correct", f"{claim.text} holds{note}", claim.text + note)
        lead = claim.running_lead
        if lead is not None and _compare(claim.lhs, lead, rounding, timeout_ms)[0] == "correct":
            running = f"{claim.lhs_text} = {_fmt(lead.value)}"
            return ClaimResult(
                claim,
                "correct",
                f"{claim.text} holds as a running total ({running})",
                f"{running} (running total)",
            )
        if _reads_as_conversion(claim):
            return ClaimResult(claim, "unknown", f"{claim.text}: reads as a unit conversion")
    except _Undecidable as exc:
        return ClaimResult(claim, "unknown", f"{claim.text}: {exc}")
    actual = ", ".join(
        f"{text} {_show(side)}"
        for text, side in ((claim.lhs_text, claim.lhs), (claim.rhs_text, claim.rhs))
        if _has_op(side)
    )
    return ClaimResult(claim, "incorrect", f"{claim.text} is false: {actual}")


def label_step(
    step_text: str, *, rounding: bool = True, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> tuple[Verdict, str]:
    """`incorrect` if any claim is false, `correct` if at least one holds and none is
    false (undecidable ones are noted), else `unknown`."""
    results = [
        check_claim(claim, rounding=rounding, timeout_ms=timeout_ms)
        for claim in find_claims(step_text)
    ]
    if not results:
        return "unknown", "no arithmetic claim"
    wrong = [r.reason for r in results if r.verdict == "incorrect"]
    if wrong:
        return "incorrect", "; ".join(wrong)
    right = [r.summary or r.claim.text for r in results if r.verdict == "correct"]
    undecided = [r.reason for r in results if r.verdict == "unknown"]
    if not right:
        return "unknown", "no decidable arithmetic claim: " + "; ".join(undecided)
    listed = "; ".join(right[:MAX_LISTED]) + ("; ..." if len(right) > MAX_LISTED else "")
    counted = f"{len(right)} arithmetic claim{' holds' if len(right) == 1 else 's hold'}"
    reason = f"{counted}: {listed}"
    if undecided:
        reason += f" (undecided: {'; '.join(undecided)})"
    return "correct", reason


# --------------------------------------------------------------------------- annotator

_SCORES: dict[str, float] = {"correct": 1.0, "incorrect": 0.0}


class Z3ArithmeticAnnotator(Annotator):
    """One label per step from the explicit arithmetic in it; no model, no gold needed."""

    name = "z3_arith"
    version = "1"
    # Refute-only: finding no false claim is no evidence that a step is right.
    evidence = Evidence(refutes_steps=True, authority="verifier", score="indicator")

    class Config(StrictConfig):
        timeout_ms: int = Field(
            default=DEFAULT_TIMEOUT_MS, ge=1, le=60_000, description="Z3 timeout per check."
        )
        rounding_tolerance: bool = Field(
            default=True, description="Accept `10 / 3 = 3.33`: half a unit in the last place."
        )

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        out = AnnotationOutput()
        # Rollouts of one problem share steps (Monte Carlo prefixes): label each text once.
        memo: dict[str, tuple[Verdict, str]] = {}
        for item in items:
            for index, step in enumerate(item.steps):
                if step not in memo:
                    memo[step] = label_step(
                        step,
                        rounding=self.config.rounding_tolerance,
                        timeout_ms=self.config.timeout_ms,
                    )
                verdict, reason = memo[step]
                out.step_labels.append(
                    self.step_label(
                        item, index, verdict, run_id, score=_SCORES.get(verdict), reason=reason
                    )
                )
        return out
