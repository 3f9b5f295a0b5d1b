"""FOLIO-style first-order logic: a parser into an AST, and from the AST into Z3.

Syntax (Unicode, ASCII and LaTeX spellings are interchangeable; keywords are
case-insensitive and cannot be used as names):

    negation     ¬  ~  !  not  \\neg  \\lnot
    and          ∧  &  &&  and  \\land  \\wedge
    xor          ⊕  ⊻  ^  xor  \\oplus
    or           ∨  |  ||  or  \\lor  \\vee
    implication  →  ⟶  ⇒  ->  =>  implies  \\to  \\rightarrow  \\implies
    equivalence  ↔  ⟷  ⇔  <->  <=>  iff  \\leftrightarrow  \\iff
    quantifiers  ∀x  ∃x  forall x  all x  exists x  (also ∀x, y  and ∀x ∃y)
    equality     a = b   a ≠ b   a != b
    grouping     ( )  [ ]  { }

Precedence, tightest first: ¬ and quantifiers > ∧ > ⊕ > ∨ > → > ↔.
→ is right-associative (P → Q → R is P → (Q → R)); the others are left-associative.

Quantifier scope (FOLIO convention): a quantifier binds like ¬, scoping over the one
formula that follows it, i.e. a parenthesised group, an atom, a negation or another
quantifier: `∀x (P(x) → Q(x)) ∧ R(a)` is `(∀x (P(x) → Q(x))) ∧ R(a)`. With a dot or
colon (`∀x. ...`, `∀x: ...`) the scope instead extends as far right as possible, as
in textbook notation. A variable used outside its quantifier's scope, as in
`∀x P(x) → Q(x)`, is an error rather than silently a constant named `x`.

Names: an identifier bound by an enclosing quantifier is a variable; any other name in
argument position is a constant (`rina`, `Harry`, `1990`). `P(a, b)` is a predicate
application; a bare name in formula position is a proposition (0-ary predicate).
Function terms (`Likes(x, mother(y))`) are not supported.

Z3 encoding: one uninterpreted sort `Entity`; predicates are uninterpreted functions
Entity^n -> Bool, constants are Entity constants, propositions are Bool constants.
A `SymbolTable` (one per problem) checks that every name keeps one kind and arity
across the premises, steps and conclusion, and is only updated by formulas that pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import z3

# --------------------------------------------------------------------------- errors


class FOLParseError(ValueError):
    """Bad formula text: `reason` says what is wrong, `position` where (a character
    offset into `text`), and `token_index` the offending token (used by callers that
    search prose for the longest parsable span)."""

    def __init__(self, reason: str, position: int, text: str, *, token_index: int | None = None) -> None:
        self.reason = reason
        self.position = position
        self.text = text
        self.token_index = token_index
        super().__init__(f"{reason} at position {position}: {_excerpt(text, position)}")


def _excerpt(text: str, position: int, width: int = 24) -> str:
    start = max(0, position - width)
    before = ("…" if start else "") + text[start:position]
    after = text[position : position + width] + ("…" if position + width < len(text) else "")
    return f"{before}⟨here⟩{after}".replace("\n", " ")


# --------------------------------------------------------------------------- lexer

_TOKEN_RE = re.compile(
    r"""
    (?P<WS>\s+)
  | (?P<IFF>↔|⟷|⇔|<->|<=>|\\leftrightarrow\b|\\Leftrightarrow\b|\\iff\b)
  | (?P<IMP>→|⟶|⇒|->|=>|\\rightarrow\b|\\Rightarrow\b|\\implies\b|\\to\b)
  | (?P<NEQ>≠|!=|\\neq\b|\\ne\b)
  | (?P<EQ>=)
  | (?P<AND>∧|&&|&|\\land\b|\\wedge\b)
  | (?P<OR>∨|\|\||\||\\lor\b|\\vee\b)
  | (?P<XOR>⊕|⊻|\^|\\oplus\b|\\veebar\b|\\xor\b)
  | (?P<NOT>¬|~|!|\\neg\b|\\lnot\b)
  | (?P<FORALL>∀|\\forall\b)
  | (?P<EXISTS>∃|\\exists\b)
  | (?P<LPAREN>[(\[{])
  | (?P<RPAREN>[)\]}])
  | (?P<COMMA>,)
  | (?P<DOT>\.)
  | (?P<COLON>:)
  | (?P<NUMBER>\d+(?!\w))
  | (?P<IDENT>[^\W\d]\w*(?:['’]\w+)*)
  | (?P<JUNK>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_KEYWORDS = {
    "forall": "FORALL",
    "all": "FORALL",
    "exists": "EXISTS",
    "and": "AND",
    "or": "OR",
    "xor": "XOR",
    "not": "NOT",
    "implies": "IMP",
    "iff": "IFF",
}
_CLOSER = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int  # character offset of the token in the source text

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


def tokenize(text: str, *, lenient: bool = False) -> list[Token]:
    """Split formula text into tokens. Strict mode rejects unknown characters;
    lenient mode keeps them as JUNK tokens (for scanning prose)."""
    tokens: list[Token] = []
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup or "JUNK"
        if kind == "WS":
            continue
        value = match.group()
        if kind == "JUNK" and not lenient:
            raise FOLParseError(f"unexpected character {value!r}", match.start(), text)
        if kind == "IDENT":
            kind = _KEYWORDS.get(value.lower(), "IDENT")
            value = value.replace("’", "'")  # `Companies’Stocks` and `Companies'Stocks` are one name
        tokens.append(Token(kind, value, match.start()))
    return tokens


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Const:
    name: str
    pos: int = field(default=0, compare=False)


Term = Var | Const


@dataclass(frozen=True)
class Atom:
    """Predicate application; no arguments means a proposition."""

    pred: str
    args: tuple[Term, ...] = ()
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Equals:
    left: Term
    right: Term


@dataclass(frozen=True)
class Not:
    body: Formula


BinaryOp = Literal["and", "or", "xor", "implies", "iff"]


@dataclass(frozen=True)
class Binary:
    op: BinaryOp
    left: Formula
    right: Formula


@dataclass(frozen=True)
class Quantifier:
    kind: Literal["forall", "exists"]
    var: str
    body: Formula


Formula = Atom | Equals | Not | Binary | Quantifier

_SYMBOL = {"and": "∧", "or": "∨", "xor": "⊕", "implies": "→", "iff": "↔"}


def format_formula(formula: Formula) -> str:
    """Canonical Unicode text; binary subformulas are always parenthesised."""

    def term(t: Term) -> str:
        return t.name

    def sub(f: Formula) -> str:
        return f"({go(f)})" if isinstance(f, (Binary, Equals)) else go(f)

    def go(f: Formula) -> str:
        if isinstance(f, Atom):
            return f"{f.pred}({', '.join(term(a) for a in f.args)})" if f.args else f.pred
        if isinstance(f, Equals):
            return f"{term(f.left)} = {term(f.right)}"
        if isinstance(f, Not):
            return f"¬{sub(f.body)}"
        if isinstance(f, Quantifier):
            mark = "∀" if f.kind == "forall" else "∃"
            body = go(f.body)
            return f"{mark}{f.var} {body}" if isinstance(f.body, (Quantifier, Atom)) else f"{mark}{f.var} ({body})"
        return f"{sub(f.left)} {_SYMBOL[f.op]} {sub(f.right)}"

    return go(formula)


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over a token list; one method per precedence level."""

    def __init__(self, tokens: list[Token], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.i = 0
        self.scope: list[str] = []  # bound variables, innermost last
        self.bound_anywhere: set[str] = set()

    # -- helpers
    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def kind(self, offset: int = 0) -> str:
        tok = self.peek(offset)
        return tok.kind if tok else "EOF"

    def fail(self, reason: str, index: int | None = None) -> FOLParseError:
        index = self.i if index is None else index
        if index < len(self.tokens):
            pos = self.tokens[index].pos
        else:
            pos = self.tokens[-1].end if self.tokens else 0
        return FOLParseError(reason, pos, self.text, token_index=index)

    def advance(self) -> Token:
        tok = self.peek()
        assert tok is not None
        self.i += 1
        return tok

    def applied(self, offset: int) -> bool:
        """Whether the token at `offset` is immediately followed by an opening bracket."""
        name, nxt = self.peek(offset), self.peek(offset + 1)
        return name is not None and nxt is not None and nxt.kind == "LPAREN" and nxt.pos == name.end

    def mismatch(self, opener: Token, closer: Token) -> FOLParseError:
        reason = f"{closer.text!r} does not match the {opener.text!r} at position {opener.pos}"
        return self.fail(reason, self.i - 1)

    def unexpected(self, expected: str) -> FOLParseError:
        tok = self.peek()
        if tok is None:
            return self.fail(f"unexpected end of formula, expected {expected}")
        return self.fail(f"unexpected {tok.text!r}, expected {expected}")

    # -- grammar
    def parse(self) -> Formula:
        if not self.tokens:
            raise FOLParseError("empty formula", 0, self.text, token_index=0)
        formula = self.iff()
        if self.i < len(self.tokens):
            raise self.unexpected("an operator or the end of the formula")
        self.check_scopes(formula)
        signatures(formula, self.text)  # one name, one kind and arity
        return formula

    def iff(self) -> Formula:
        left = self.implies()
        while self.kind() == "IFF":
            self.advance()
            left = Binary("iff", left, self.implies())
        return left

    def implies(self) -> Formula:
        left = self.disjunction()
        if self.kind() == "IMP":
            self.advance()
            return Binary("implies", left, self.implies())  # right-associative
        return left

    def disjunction(self) -> Formula:
        left = self.exclusive()
        while self.kind() == "OR":
            self.advance()
            left = Binary("or", left, self.exclusive())
        return left

    def exclusive(self) -> Formula:
        left = self.conjunction()
        while self.kind() == "XOR":
            self.advance()
            left = Binary("xor", left, self.conjunction())
        return left

    def conjunction(self) -> Formula:
        left = self.unary()
        while self.kind() == "AND":
            self.advance()
            left = Binary("and", left, self.unary())
        return left

    def unary(self) -> Formula:
        kind = self.kind()
        if kind == "NOT":
            self.advance()
            return Not(self.unary())
        if kind in ("FORALL", "EXISTS"):
            return self.quantifier()
        if kind == "LPAREN":
            opener = self.advance()
            inner = self.iff()
            if self.kind() != "RPAREN":
                raise self.unexpected(f"{_CLOSER[opener.text]!r} to close the {opener.text!r} at position {opener.pos}")
            closer = self.advance()
            if closer.text != _CLOSER[opener.text]:
                raise self.mismatch(opener, closer)
            return inner
        if kind in ("IDENT", "NUMBER"):
            return self.atom()
        raise self.unexpected("a formula")

    def quantifier(self) -> Formula:
        mark = self.advance()
        qkind: Literal["forall", "exists"] = "forall" if mark.kind == "FORALL" else "exists"
        names = [self.variable_name()]
        # `∀x, y (...)`: a comma then a name that is not a predicate application
        # (`∀x, P(x)`); an application is told apart by "(" directly after the name.
        while self.kind() == "COMMA" and self.kind(1) == "IDENT" and not self.applied(1):
            self.advance()
            names.append(self.variable_name())
        wide = False
        if self.kind() in ("DOT", "COLON"):
            self.advance()
            wide = True  # dot notation: scope extends as far right as possible
        elif self.kind() == "COMMA":
            self.advance()
        self.scope.extend(names)
        self.bound_anywhere.update(names)
        try:
            body = self.iff() if wide else self.unary()
        finally:
            del self.scope[len(self.scope) - len(names) :]
        for name in reversed(names):
            body = Quantifier(qkind, name, body)
        return body

    def variable_name(self) -> str:
        if self.kind() != "IDENT":
            raise self.unexpected("a variable name after the quantifier")
        return self.advance().text

    def term(self) -> Term:
        kind = self.kind()
        if kind not in ("IDENT", "NUMBER"):
            raise self.unexpected("a constant or variable")
        tok = self.advance()
        if kind == "IDENT" and self.kind() == "LPAREN":
            raise self.fail(f"function terms such as {tok.text}(...) are not supported", self.i - 1)
        if tok.text in self.scope:
            return Var(tok.text)
        return Const(tok.text, tok.pos)

    def atom(self) -> Formula:
        tok = self.peek()
        assert tok is not None
        if self.kind(1) in ("EQ", "NEQ"):
            left = self.term()
            negated = self.advance().kind == "NEQ"
            equality = Equals(left, self.term())
            return Not(equality) if negated else equality
        if tok.kind == "NUMBER":
            raise self.unexpected("a formula")
        self.advance()
        if self.kind() != "LPAREN":
            if tok.text in self.scope:
                raise self.fail(f"variable {tok.text!r} is used as a formula", self.i - 1)
            return Atom(tok.text, (), tok.pos)
        opener = self.advance()
        args = [self.term()]
        while self.kind() == "COMMA":
            self.advance()
            args.append(self.term())
        if self.kind() != "RPAREN":
            raise self.unexpected(f"',' or ')' in the arguments of {tok.text}")
        closer = self.advance()
        if closer.text != _CLOSER[opener.text]:
            raise self.mismatch(opener, closer)
        return Atom(tok.text, tuple(args), tok.pos)

    def check_scopes(self, formula: Formula) -> None:
        """A name bound somewhere in the formula but used as a constant elsewhere is
        almost always a scoping mistake (`∀x P(x) → Q(x)`), so reject it."""
        for const in _constants(formula):
            if const.name in self.bound_anywhere:
                raise FOLParseError(
                    f"variable {const.name!r} is used outside the scope of its quantifier "
                    "(a quantifier scopes over the next parenthesised or atomic formula; "
                    f"write e.g. ∀{const.name} (A({const.name}) → B({const.name})))",
                    const.pos,
                    self.text,
                )


def _constants(formula: Formula) -> list[Const]:
    out: list[Const] = []

    def walk(f: Formula) -> None:
        if isinstance(f, Atom):
            out.extend(a for a in f.args if isinstance(a, Const))
        elif isinstance(f, Equals):
            out.extend(a for a in (f.left, f.right) if isinstance(a, Const))
        elif isinstance(f, Not):
            walk(f.body)
        elif isinstance(f, Quantifier):
            walk(f.body)
        else:
            walk(f.left)
            walk(f.right)

    walk(formula)
    return out


def parse_tokens(tokens: list[Token], text: str) -> Formula:
    """Parse a token list (possibly a slice of a longer text) into a formula."""
    try:
        return _Parser(tokens, text).parse()
    except RecursionError:
        pos = tokens[0].pos if tokens else 0
        raise FOLParseError("formula is nested too deeply", pos, text) from None


def parse_ast(text: str) -> Formula:
    """Parse formula text into an AST (no symbol table involved).

    Brackets left unbalanced (a FOLIO typo: `∀x (P(x) → Q(x)`) are read as closing at the
    end of the formula, and a closing bracket that closes nothing as opened at its start.
    """
    tokens = tokenize(text)
    for tok in tokens:
        if tok.kind == "JUNK":  # pragma: no cover - strict tokenize already raised
            raise FOLParseError(f"unexpected character {tok.text!r}", tok.pos, text)
    return parse_tokens(_balanced(tokens), text)


_OPENER = {closer: opener for opener, closer in _CLOSER.items()}


def _balanced(tokens: list[Token]) -> list[Token]:
    """The tokens with an opening bracket at the start for each closing one that closes
    nothing, and a closing one at the end for each left open."""
    unopened: list[Token] = []
    left_open: list[Token] = []
    for tok in tokens:
        if tok.kind == "LPAREN":
            left_open.append(tok)
        elif tok.kind == "RPAREN":
            if left_open:
                left_open.pop()
            else:
                unopened.append(tok)
    if not (unopened or left_open):
        return tokens
    start, end = tokens[0].pos, tokens[-1].end
    openers = [Token("LPAREN", _OPENER[tok.text], start) for tok in reversed(unopened)]
    closers = [Token("RPAREN", _CLOSER[tok.text], end) for tok in reversed(left_open)]
    return [*openers, *tokens, *closers]


# --------------------------------------------------------------------------- symbols


@dataclass(frozen=True)
class Signature:
    """What a name is: a predicate of some arity (0 = proposition) or a constant."""

    kind: Literal["predicate", "constant"]
    arity: int = 0

    def describe(self) -> str:
        if self.kind == "constant":
            return "a constant"
        if self.arity == 0:
            return "a proposition (0 arguments)"
        return f"a predicate with {self.arity} argument{'s' if self.arity != 1 else ''}"


def signatures(formula: Formula, text: str = "") -> dict[str, tuple[Signature, int]]:
    """Every name in the formula with its signature and first position. Raises on a
    name used two ways inside this one formula."""
    found: dict[str, tuple[Signature, int]] = {}

    def note(name: str, sig: Signature, pos: int) -> None:
        prior = found.get(name)
        if prior is None:
            found[name] = (sig, pos)
        elif prior[0] != sig:
            raise FOLParseError(
                f"{name!r} is used as {sig.describe()} here but as {prior[0].describe()} earlier (position {prior[1]})",
                pos,
                text,
            )

    def walk(f: Formula) -> None:
        if isinstance(f, Atom):
            note(f.pred, Signature("predicate", len(f.args)), f.pos)
            for a in f.args:
                if isinstance(a, Const):
                    note(a.name, Signature("constant"), a.pos)
        elif isinstance(f, Equals):
            for a in (f.left, f.right):
                if isinstance(a, Const):
                    note(a.name, Signature("constant"), a.pos)
        elif isinstance(f, (Not, Quantifier)):
            walk(f.body)
        else:
            walk(f.left)
            walk(f.right)

    walk(formula)
    return found


class SymbolTable:
    """Names shared by all formulas of one problem (premises, steps, conclusion)."""

    def __init__(self) -> None:
        self.sort = z3.DeclareSort("Entity")
        self._signatures: dict[str, Signature] = {}
        self._predicates: dict[str, z3.FuncDeclRef] = {}
        self._propositions: dict[str, z3.BoolRef] = {}
        self._constants: dict[str, z3.ExprRef] = {}

    def signature(self, name: str) -> Signature | None:
        return self._signatures.get(name)

    def names(self) -> set[str]:
        return set(self._signatures)

    def snapshot(self) -> dict[str, Signature]:
        return dict(self._signatures)

    def check(self, formula: Formula, text: str = "") -> dict[str, tuple[Signature, int]]:
        """Raise FOLParseError when the formula disagrees with the names seen so far;
        otherwise return its signatures. Never changes the table."""
        found = signatures(formula, text)
        for name, (sig, pos) in found.items():
            known = self._signatures.get(name)
            if known is not None and known != sig:
                reason = f"{name!r} is used as {sig.describe()} here but as {known.describe()} elsewhere"
                raise FOLParseError(reason, pos, text)
        return found

    def to_z3(self, formula: Formula, text: str = "") -> z3.BoolRef:
        """Check, then register the formula's names, then build the Z3 term."""
        for name, (sig, _) in self.check(formula, text).items():
            if name in self._signatures:
                continue
            self._signatures[name] = sig
            if sig.kind == "constant":
                self._constants[name] = z3.Const(name, self.sort)
            elif sig.arity == 0:
                self._propositions[name] = z3.Bool(name)
            else:
                self._predicates[name] = z3.Function(name, *([self.sort] * sig.arity), z3.BoolSort())
        return self._build(formula, {})

    def _term(self, t: Term, env: dict[str, z3.ExprRef]) -> z3.ExprRef:
        return env[t.name] if isinstance(t, Var) else self._constants[t.name]

    def _build(self, f: Formula, env: dict[str, z3.ExprRef]) -> z3.BoolRef:
        if isinstance(f, Atom):
            if not f.args:
                return self._propositions[f.pred]
            return self._predicates[f.pred](*(self._term(a, env) for a in f.args))
        if isinstance(f, Equals):
            return self._term(f.left, env) == self._term(f.right, env)
        if isinstance(f, Not):
            return z3.Not(self._build(f.body, env))
        if isinstance(f, Quantifier):
            # Z3 abstracts the bound constant by identity, so a bound `x` never
            # captures a same-named constant used in other formulas.
            var = z3.Const(f.var, self.sort)
            body = self._build(f.body, {**env, f.var: var})
            return z3.ForAll([var], body) if f.kind == "forall" else z3.Exists([var], body)
        left, right = self._build(f.left, env), self._build(f.right, env)
        if f.op == "and":
            return z3.And(left, right)
        if f.op == "or":
            return z3.Or(left, right)
        if f.op == "xor":
            return z3.Xor(left, right)
        if f.op == "implies":
            return z3.Implies(left, right)
        return left == right


def parse_formula(text: str, symbols: SymbolTable | None = None) -> z3.BoolRef:
    """Parse formula text straight to a Z3 Boolean term (registering its names in
    `symbols`, or in a fresh table)."""
    table = symbols if symbols is not None else SymbolTable()
    return table.to_z3(parse_ast(text), text)
