"""Reading `a = b = c` chains in a step into claims (`find_claims`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from verifiers.arithmetic.expr import Claim, ClaimSource, Expr, NoParse, canon, has_op, is_literal, leading_number
from verifiers.arithmetic.limits import MAX_SIDE_TOKENS
from verifiers.arithmetic.normalize import GSM8K_RE, normalize
from verifiers.arithmetic.parser import Parser
from verifiers.arithmetic.tokens import EQ, LP, NUM, OP, OP_WORDS, OPERAND_START, RP, VAR, WORD, Tok, tokenize


@dataclass(slots=True)
class _Side:
    expr: Expr
    text: str
    units: frozenset[str]
    continuation: bool = False


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
    if first is not None:
        return _Side(expr, f"{first.text} {shown}", frozenset(parser.units), True)
    return _Side(expr, shown, frozenset(parser.units))


def _parse_full(text: str, toks: list[Tok], i: int, j: int, first: _Side | None) -> _Side | None:
    parser = Parser(toks, i, j)
    try:
        expr = parser.expr(first.expr if first else None)
    except NoParse:
        return None
    return _make_side(text, toks, (i, j), parser, expr, first) if parser.pos == j else None


def _parse_prefix(
    text: str, toks: list[Tok], i: int, j: int, first: _Side | None
) -> _Side | None:
    """The longest expression at the start of toks[i:j] that ends at a clean boundary."""
    parser = Parser(toks, i, j)
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


def _parse_suffix(text: str, toks: list[Tok], i: int, j: int) -> _Side | None:
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
        side = _parse_full(text, toks, s, j, None)
        if side is not None:
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










def _pairs(chain: list[_Side], source: ClaimSource) -> Iterator[Claim]:
    for k in range(len(chain) - 1):
        left, right = chain[k], chain[k + 1]
        if right.continuation or not (has_op(left.expr) or has_op(right.expr)):
            continue  # `1 hour = 60 minutes`, `25% = 0.25`: bare numbers are no claim
        followed = k + 2 < len(chain)
        lead = leading_number(right.expr) if followed or is_literal(left.expr) else None
        yield Claim(
            left.text, right.text, left.expr, right.expr, source, lead, left.units, right.units
        )


def _clause_claims(text: str, toks: list[Tok], source: ClaimSource) -> Iterator[Claim]:
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
    normalized = normalize(text)
    # A line end always ends a clause: only lines with an `=` need tokenizing.
    for line in normalized.split("\n"):
        if "=" in line:
            for clause in tokenize(line):
                yield from _clause_claims(line, clause, source)


def find_claims(step_text: str) -> list[Claim]:
    """The explicit arithmetic equalities in a step, in order, without duplicates.

    >>> [c.text for c in find_claims("She has 16 - 3 - 4 = 9 eggs, so x = 5.")]
    ['16 - 3 - 4 = 9']
    """
    annotations = GSM8K_RE.findall(step_text)
    plain = GSM8K_RE.sub(" ", step_text) if annotations else step_text
    found: list[Claim] = []
    seen: set[str] = set()
    sources: list[tuple[ClaimSource, str]] = [("text", plain)]
    sources += [("gsm8k", annotation) for annotation in annotations]
    for source, chunk in sources:
        for claim in _claims_in(chunk, source):
            # `80,000+50,000 = $130,000` and its annotation `<<80000+50000=130000>>` are one claim.
            key = f"{canon(claim.lhs)}={canon(claim.rhs)}"
            if key not in seen:
                seen.add(key)
                found.append(claim)
    return found
