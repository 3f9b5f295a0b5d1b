"""Recursive-descent parser for the expression on one side of an `=`."""

from __future__ import annotations

from rmforge.verifiers.arithmetic.expr import BinOp, Expr, Neg, NoParse, Num, Root
from rmforge.verifiers.arithmetic.limits import MAX_DEPTH
from rmforge.verifiers.arithmetic.tokens import (
    BY_WORDS,
    LP,
    NUM,
    OP,
    OP_WORDS,
    OPERAND_START,
    ROOT,
    ROOT_INDEX,
    RP,
    WORD,
    Tok,
)

# Words that join clauses or name a relation: prose, never the unit of the value before
# them, so a side ends there (`\\(BD = \\frac{31}{2}\\) and \\(AC = 22\\)`,
# `from -2-5 = -7 to -2+5 = 3`).
_PROSE_WORDS = frozenset(
    "and or but so then thus hence therefore since because which that where when while if "
    "to from than is are was were gives yields".split()
)


class Parser:
    """Recursive descent over toks[pos:end]; unit words after a value are skipped."""

    __slots__ = ("calculator", "depth", "doubt", "end", "pos", "toks", "units")

    def __init__(self, toks: list[Tok], start: int, end: int, calculator: bool = False) -> None:
        self.toks, self.pos, self.end = toks, start, end
        # A GSM8K calculator annotation (`<<18-36=-18>>`): its `-` is always a minus.
        self.calculator = calculator
        self.depth = 0
        self.units: set[str] = set()
        self.doubt = ""  # why the expression may mean something else than it reads as

    def peek(self, k: int = 0) -> Tok | None:
        i = self.pos + k
        return self.toks[i] if i < self.end else None

    def _operand_at(self, k: int) -> bool:
        tok = self.peek(k)
        return tok is not None and tok.kind in OPERAND_START

    def _op_word(self) -> tuple[str, int] | None:
        """(operator, tokens) when the next words are an operator before an operand."""
        tok = self.peek()
        if tok is None or tok.kind != WORD:
            return None
        if tok.low in OP_WORDS and self._operand_at(1):
            return OP_WORDS[tok.low], 1
        after = self.peek(1)
        if tok.low in BY_WORDS and after and after.low == "by" and self._operand_at(2):
            return BY_WORDS[tok.low], 2
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
            right = self.term()
            if not self.calculator:
                self._doubt_dash(tok, left, right)
            left = BinOp(op, left, right)
        return left

    def _doubt_dash(self, tok: Tok, left: Expr, right: Expr) -> None:
        if _reads_as_range(tok, left, right):
            self.doubt = "an unspaced `-` between a smaller and a larger number may be a range"
        elif _reads_as_mixed_number(tok, left, right):
            self.doubt = "`3-1/2` may be the mixed number 3 1/2"

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
                if isinstance(left, BinOp) and left.op == "/":
                    self.doubt = "`a/b(c)` may divide by b(c)"
            else:
                break
            self.pos += width
            right = self.unary()
            if op == "/" and isinstance(right, Num) and right.percent:
                self.doubt = "`a/b%` may mean (a/b)%"
            left = BinOp(op, left, right)
        return left

    def unary(self) -> Expr:
        tok = self.peek()
        if tok is not None and tok.kind == OP and tok.op in "+-":
            self.pos += 1
            self._enter()
            operand = self.unary()
            self.depth -= 1
            if tok.op == "-" and isinstance(operand, BinOp) and operand.op == "^":
                self.doubt = "`-a^b` may mean (-a)^b"
            return Neg(operand) if tok.op == "-" else operand
        return self.power()

    def power(self) -> Expr:
        base = self.atom()
        tok = self.peek()
        if tok is not None and tok.kind == OP and tok.op == "^":
            self.pos += 1
            self._enter()
            bracketed = (nxt := self.peek()) is not None and nxt.kind == LP
            exponent = self.unary()
            if not bracketed and isinstance(exponent, BinOp) and exponent.op == "^":
                self.doubt = "`a^b^c` may mean (a^b)^c"
            base = BinOp("^", base, exponent)
            self.depth -= 1
        self._skip_units()
        return base

    def atom(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise NoParse
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
                raise NoParse
            self.pos += 1
            self.depth -= 1
            return inner
        if tok.kind == ROOT:
            self.pos += 1
            self._enter()
            operand = self.atom()
            self.depth -= 1
            return Root(ROOT_INDEX[tok.op], operand)
        raise NoParse

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise NoParse

    def _skip_units(self) -> None:
        """Skip `apples`, `minutes/hour`, `per day`, `(eaten)` after a value."""
        while (tok := self.peek()) is not None:
            if tok.kind == WORD and tok.low in _PROSE_WORDS:
                return
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


def _reads_as_range(tok: Tok, left: Expr, right: Expr) -> bool:
    """`pages 10-20`, `1990-1995`: a hyphen, not a minus."""
    return (
        tok.text == "-"
        and not tok.space
        and isinstance(left, Num)
        and isinstance(right, Num)
        and left.value < right.value
    )


def _reads_as_mixed_number(tok: Tok, left: Expr, right: Expr) -> bool:
    """`2-1/2 cups`: a hyphenated mixed number, as in recipes."""
    while isinstance(right, BinOp) and right.op in "*/^" and isinstance(right.left, BinOp):
        right = right.left
    return (
        tok.text == "-"
        and not tok.space
        and isinstance(left, Num)
        and isinstance(right, BinOp)
        and right.op == "/"
        and isinstance(right.left, Num)
        and isinstance(right.right, Num)
        and 0 < right.left.value < right.right.value
    )


def _is_share(e: Expr) -> bool:
    return (isinstance(e, Num) and e.percent) or (isinstance(e, BinOp) and e.op == "/")
