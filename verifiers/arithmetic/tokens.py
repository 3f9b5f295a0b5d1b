"""Tokens of a normalised line, split into clauses; letters classed as `x`, unit or variable."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fractions import Fraction

from rmforge.verifiers.arithmetic.expr import Num
from rmforge.verifiers.arithmetic.limits import MAX_NUMBER_CHARS

NUM, OP, EQ, LP, RP, ROOT, WORD, VAR, TAINT, BREAK, ELLIPSIS = (
    "num op eq lp rp root word var taint break ellipsis".split()
)
OPERAND_START = (NUM, LP, ROOT)

_TOKEN_RE = re.compile(
    r"""
    (?P<space>[^\S\n]+)
    |(?P<date>\d{4}-[01]\d-[0-3]\d(?!\d)|\d{1,2}/\d{1,2}/\d{4}(?!\d))
    |(?P<time>\d+(?::\d+)+)
    |(?P<repeating>\d*\.\d*\ue000)
    |(?P<decimal_comma>\d+,\d{1,2}(?![\d,]))
    # Notation around an operand: primes (`f''(-4)`), factorials and subfactorials (`5!`, `!5`).
    |(?P<prime>(?<=[^\W\d_])'+(?=\s*[(=]))
    |(?P<factorial>(?<=[\d)])!(?!=)|!(?=[\d(]))
    |(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)
    |(?P<pct>%|(?i:per\s?cent)\b)
    |(?P<word>[^\W\d_]+(?:'[^\W\d_]+)*)
    |(?P<op>\*\*|[-+*/^×])
    |(?P<cmp><=|>=|!=|=>|=<|[<>≤≥≠≈~])
    |(?P<eq>==?)
    |(?P<lp>[(\[{])
    |(?P<rp>[)\]}])
    |(?P<root>[√∛∜])
    |(?P<ellipsis>\.{2,}|…)
    |(?P<brk>[\n,.;:?!"…—–#•→⇒'])
    |(?P<other>.)
    """,
    re.VERBOSE,
)
_GROUP_KIND = {
    "date": TAINT, "time": TAINT, "repeating": TAINT, "decimal_comma": TAINT, "num": NUM,
    "prime": TAINT, "factorial": TAINT,
    "word": WORD, "op": OP,
    "cmp": BREAK, "eq": EQ, "lp": LP, "rp": RP, "root": ROOT, "brk": BREAK, "ellipsis": ELLIPSIS,
    "other": TAINT,
}  # fmt: skip
ROOT_INDEX = {"√": 2, "∛": 3, "∜": 4}
# Units written without a space (`12km`); other letters glued to a number are
# variables or ordinals (`2x`, `3rd`, `5pm`).
_ATTACHED_UNITS = frozenset("km kg cm mm mg ml lb lbs oz ft hr hrs min mins sec secs mph kph kmh yd yds mi gal".split())
# Constants, functions and multipliers written as words: never units, never prose a
# claim may start after (`2 pi + 3`, `log 8 + 1`, `5 squared + 1`, `twice 5 + 1`).
_MATH_WORDS = frozenset(
    "pi log ln lg sin cos tan cot csc arcsin arccos arctan sinh cosh tanh exp mod choose "
    "gcd lcm floor ceil det squared cubed twice thrice double triple half".split()
)
OP_WORDS = {"times": "*", "plus": "+", "minus": "-", "of": "*"}
BY_WORDS = {"divided": "/", "multiplied": "*"}


@dataclass(slots=True, eq=False)
class Tok:
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


def tokenize(text: str) -> list[list[Tok]]:
    """Tokens of `text`, split into clauses at sentence punctuation and line ends."""
    toks: list[Tok] = []
    space = True
    for m in _TOKEN_RE.finditer(text):
        group, s = m.lastgroup, m.group()
        if group == "space":
            space = True
            continue
        if group == "pct":
            last = toks[-1] if toks else None
            if last is not None and last.kind == NUM and last.num and not last.num.percent:
                last.num = replace(last.num, value=last.num.value / 100, percent=True)
                last.end = m.end()
            else:
                toks.append(Tok(TAINT, s, m.start(), m.end(), space))
            space = False
            continue
        assert group is not None
        tok = Tok(_GROUP_KIND[group], s, m.start(), m.end(), space)
        space = False
        if group == "num":
            if len(s) > MAX_NUMBER_CHARS:
                tok.kind = TAINT  # too long to be worth reading (and `int()` refuses it)
            else:
                tok.num = _number(s)
        elif group == "op":
            tok.op = {"**": "^", "×": "*"}.get(s, s)
        elif group == "root":
            tok.op = s
        elif group == "word":
            tok.low = s.lower()
            if tok.low == "sqrt":
                tok.kind, tok.op = ROOT, "√"
            elif tok.low in _MATH_WORDS or s == "π":
                tok.kind = TAINT
        toks.append(tok)
    _classify(toks)
    clauses: list[list[Tok]] = []
    current: list[Tok] = []
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


def _classify(toks: list[Tok]) -> None:
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
        elif tok.kind == ELLIPSIS:
            tok.kind = TAINT if _elides(prev, nxt) else BREAK
            if tok.kind == BREAK and prev is not None and prev.kind == NUM and prev.num:
                prev.num = replace(prev.num, truncated=True)  # 3.363... bags


def _word_kind(tok: Tok, prev: Tok | None, nxt: Tok | None, before: Tok | None) -> str:
    low = tok.low
    if (
        low == "x"
        and prev is not None
        and nxt is not None
        and nxt.kind in OPERAND_START
        and (prev.kind in (NUM, RP) or (prev.kind == WORD and tok.space and nxt.space))
    ):
        return OP  # 12 x 7, 12x7, 5 apples x 3
    if prev is not None and prev.kind in (NUM, RP) and not tok.space:
        return WORD if low in _ATTACHED_UNITS else VAR  # 2x, 3rd, (1/2)ab
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


def _elides(prev: Tok | None, nxt: Tok | None) -> bool:
    """Whether an ellipsis stands for elided terms (`1 + 2 + ... + 10`,
    `\\frac{3}{2} \\cdots \\frac{100}{99}`) rather than ending a truncated decimal
    (`3.363...`) or a sentence: an expression around it is then not the whole one."""
    if nxt is not None and nxt.kind == OP:
        return True
    if prev is None:
        return False
    return prev.kind in (OP, RP, TAINT) or (prev.kind == NUM and nxt is not None and nxt.kind in OPERAND_START)


def _is_markup(tok: Tok, prev: Tok | None, nxt: Tok | None) -> bool:
    if prev is None or prev.kind == BREAK or nxt is None or nxt.kind in (BREAK, EQ, RP):
        return True
    if nxt.kind == WORD:
        # `the *total*`: emphasis hugs its word; `2 * x` and `5 * apples` are products.
        return not nxt.space and (tok.space or prev.kind == WORD)
    # `**bold**` hugs its text on one side only; `2**3` and `2 ** 3` are powers.
    return tok.text == "**" and tok.space != nxt.space
