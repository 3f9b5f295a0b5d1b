"""Find the formula a step of a logic solution derives, and how its prose frames it.

`extract_claim(step, symbols)` reads a step written in prose around a FOLIO-notation
formula ("Step 3: Therefore, Smart(rina) -- by premises 1 and 2") and returns the one
formula it derives (`Claim`: negated, hedged or hypothetical as the prose says), the
final-answer line (`AnswerLine`), or why there is none (`NoClaim`). The `z3_logic`
annotator checks each claim with `verifiers.logic.entailment`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rmforge.verifiers.logic.entailment import Label, normalize_label
from rmforge.verifiers.logic.fol import (
    Atom,
    Binary,
    Const,
    Equals,
    FOLParseError,
    Formula,
    Not,
    Quantifier,
    Signature,
    SymbolTable,
    Term,
    Token,
    format_formula,
    parse_tokens,
    signatures,
    tokenize,
)

_MARKUP = re.compile(r"\*\*|__|`|\$")
_STEP_PREFIX = re.compile(r"^\s*(?:[-*•>]\s+)?(?:step\s*\d+\s*[:.)\-–—]?|\(?\d+[.):])?\s*", re.I)
_ANSWER_LINE = re.compile(
    r"^\W*(?:(?:so|thus|therefore|hence)[,\s]+)?(?:the\s+)?(?:final\s+)?(?:answer|label|conclusion)"
    r"(?:\s+is)?\s*[:：=\-–—]?\s*(?:\\boxed\{)?\s*(true|false|uncertain|unknown)\b",
    re.I,
)
# Words that introduce the derived formula: the text after the last one is tried first.
_CONCLUSION_MARKER = re.compile(
    r"\b(?:therefore|thus|hence|so|consequently|it\s+follows(?:\s+that)?"
    r"|we\s+(?:can\s+)?(?:conclude|infer|derive|deduce|get|obtain|have|know)(?:\s+that)?"
    r"|(?:this|which)\s+(?:means|gives|implies|shows)(?:\s+that)?)\b\s*[,:]?",
    re.I,
)
# Words that start a justification after the formula: text before the first one is tried next.
_EXPLANATION_MARKER = re.compile(
    r"\s(?:--|—|–)\s"
    r"|\b(?:because|since|as\s+(?:stated|given|shown)|according\s+to|using|via"
    r"|by\s+(?:premises?|steps?|modus|universal|existential|instantiation|contraposition|the|rule|definition|p\d)"
    r"|from\s+(?:premises?|steps?|p\d|the)|which\s+(?:follows|holds|is))\b"
    r"|\(\s*(?:by|from|premises?|steps?|p\d)\b"
    r"|\banswer\s*:",
    re.I,
)
_HEDGE = re.compile(
    r"\b(?:cannot|can\s*not|can't|could\s+not|couldn't|unable\s+to)\s+(?:be\s+)?"
    r"(?:determine|determined|conclude|concluded|infer|inferred|derive|derived|deduce|deduced"
    r"|prove|proved|proven|establish|established|decide|decided|tell|know)\b"
    r"|\b(?:uncertain|undetermined|not\s+necessarily|no\s+information|insufficient\s+information"
    r"|not\s+enough\s+information|may\s+or\s+may\s+not|unknown\s+whether|not\s+known\s+whether)\b",
    re.I,
)
# Prose that makes the formula an assumption or a case, not a claim: left unchecked.
_HYPOTHETICAL = re.compile(
    r"\b(?:suppose|supposing|assume|assuming|assumption|hypothetically|contradiction|if|case\s+\d+"
    r"|(?:consider|in)\s+the\s+case|let'?s\s+consider)\b",
    re.I,
)
_NEGATED_BEFORE = re.compile(r"\b(?:not\s+the\s+case|false|not\s+true)\s+that\s*[,:]?\s*$", re.I)
_NEGATED_AFTER = re.compile(r"^\s*(?:is\s+false|is\s+not\s+true|does\s+not\s+hold|is\s+not\s+the\s+case)\b", re.I)
_STARTERS = frozenset({"IDENT", "NUMBER", "NOT", "FORALL", "EXISTS", "LPAREN"})
_MAX_TOKENS = 160  # bounds the span search on very long steps


@dataclass(frozen=True)
class Claim:
    """A formula found in a step, with how the prose around it frames it."""

    formula: Formula
    text: str  # the formula as written in the step
    negated: bool = False  # "it is not the case that F" / "F is false"
    hedged: bool = False  # "we cannot determine whether F": claims F is undetermined
    hypothetical: bool = False  # "suppose F", "if F then ...", "case 1: F"

    def describe(self) -> str:
        shown = format_formula(self.formula)
        if self.negated:
            shown = f"¬({shown})"
        return f"undetermined: {shown}" if self.hedged else shown


@dataclass(frozen=True)
class AnswerLine:
    label: Label  # the stated final answer


@dataclass(frozen=True)
class NoClaim:
    reason: str


@dataclass(frozen=True)
class _Candidate:
    formula: Formula
    start: int  # character offsets into the cleaned step text
    end: int
    tokens: int
    known: bool  # every name is in the problem's vocabulary


def _names(formula: Formula) -> set[str]:
    return set(signatures(formula))


def _align_names(formula: Formula, vocabulary: dict[str, Signature]) -> Formula:
    """Steps often change a name's case (`Smart(Rina)` for the premises' `rina`): map a
    name the problem lacks onto the one problem name that differs only in case."""
    folded: dict[str, list[str]] = {}
    for name in vocabulary:
        folded.setdefault(name.lower(), []).append(name)

    def fix(name: str) -> str:
        if name in vocabulary:
            return name
        matches = folded.get(name.lower(), [])
        return matches[0] if len(matches) == 1 else name

    def term(t: Term) -> Term:
        return Const(fix(t.name), t.pos) if isinstance(t, Const) else t

    def go(f: Formula) -> Formula:
        if isinstance(f, Atom):
            return Atom(fix(f.pred), tuple(term(a) for a in f.args), f.pos)
        if isinstance(f, Equals):
            return Equals(term(f.left), term(f.right))
        if isinstance(f, Not):
            return Not(go(f.body))
        if isinstance(f, Quantifier):
            return Quantifier(f.kind, f.var, go(f.body))
        return Binary(f.op, go(f.left), go(f.right))

    return go(formula)


def _has_content(formula: Formula, vocabulary: dict[str, Signature]) -> bool:
    """Reject spans of prose that happen to parse: bare words parse as propositions,
    so every proposition must be one the problem uses; predicate applications and
    equalities are formula-like on their own."""
    props: list[str] = []
    applied = False

    def walk(f: Formula) -> None:
        nonlocal applied
        if isinstance(f, Atom):
            if f.args:
                applied = True
            else:
                props.append(f.pred)
        elif isinstance(f, Equals):
            applied = True
        elif isinstance(f, (Not, Quantifier)):
            walk(f.body)
        elif isinstance(f, Binary):
            walk(f.left)
            walk(f.right)

    walk(formula)
    known_props = all(vocabulary.get(p) == Signature("predicate", 0) for p in props)
    return known_props and (applied or bool(props))


def _best_span(
    text: str, lo: int, hi: int, symbols: SymbolTable, vocabulary: dict[str, Signature], errors: list[str]
) -> _Candidate | None:
    """The best parsable token span of text[lo:hi]: names all known first, then the
    longest, then the latest (derived formulas tend to come last)."""
    tokens: list[Token] = [t for t in tokenize(text, lenient=True) if lo <= t.pos and t.end <= hi][:_MAX_TOKENS]
    best: _Candidate | None = None
    for start in range(len(tokens)):
        if tokens[start].kind not in _STARTERS:
            continue
        end = len(tokens)
        while end > start:
            try:
                formula = _align_names(parse_tokens(tokens[start:end], text), vocabulary)
            except FOLParseError as err:
                k = err.token_index
                # A failure at token k recurs for every longer span (the parser looks
                # at most two tokens ahead), so jump straight below it.
                end = end - 1 if k is None else min(end - 1, start + k + 2)
                continue
            if _has_content(formula, vocabulary):
                try:
                    symbols.check(formula, text)
                except FOLParseError as err:
                    errors.append(f"{text[tokens[start].pos : tokens[end - 1].end]!r}: {err.reason}")
                else:
                    cand = _Candidate(
                        formula,
                        tokens[start].pos,
                        tokens[end - 1].end,
                        end - start,
                        known=_names(formula) <= set(vocabulary),
                    )
                    if best is None or (cand.known, cand.tokens, cand.start) > (best.known, best.tokens, best.start):
                        best = cand
                    break
            end -= 1
    return best


def _regions(text: str) -> list[tuple[int, int]]:
    """Where to look for the formula, most specific first."""
    regions: list[tuple[int, int]] = []
    marks = list(_CONCLUSION_MARKER.finditer(text))
    if marks:
        lo = marks[-1].end()
        cut = _EXPLANATION_MARKER.search(text, lo)
        regions.append((lo, cut.start() if cut else len(text)))
    cut = _EXPLANATION_MARKER.search(text)
    if cut and cut.start() > 0:
        regions.append((0, cut.start()))
    regions.append((0, len(text)))
    return list(dict.fromkeys(regions))


def extract_claim(
    step: str, symbols: SymbolTable, vocabulary: dict[str, Signature] | None = None
) -> Claim | AnswerLine | NoClaim:
    """Find the one formula a step derives.

    Accepts `Step N:` / `N.` / bullet prefixes, markdown and `$...$`, leading prose
    ("Therefore,", "So", "we conclude that"), trailing justifications (after ` -- `,
    "because", "since", "by premise 2", "(from step 1)"), and picks the longest
    span that parses, preferring spans whose names all occur in the problem. Names
    that differ from a problem name only in case are mapped onto it. A line
    stating the final answer ("Answer: True") is returned as `AnswerLine`.
    """
    vocabulary = symbols.snapshot() if vocabulary is None else vocabulary
    text = _STEP_PREFIX.sub("", _MARKUP.sub(" ", step), count=1).strip()
    answer = _ANSWER_LINE.match(text)
    if answer:
        label = normalize_label(answer.group(1))
        assert label is not None
        return AnswerLine(label)
    if not text:
        return NoClaim("empty step")
    errors: list[str] = []
    for lo, hi in _regions(text):
        found = _best_span(text, lo, hi, symbols, vocabulary, errors)
        if found is None:
            continue
        before, after = text[: found.start], text[found.end :]
        prose = f"{before} {after}"
        hedged = bool(_HEDGE.search(prose))  # "cannot determine if F" is a hedge, not a supposition
        return Claim(
            formula=found.formula,
            text=text[found.start : found.end],
            negated=bool(_NEGATED_BEFORE.search(before) or _NEGATED_AFTER.match(after)),
            hedged=hedged,
            hypothetical=not hedged and bool(_HYPOTHETICAL.search(prose)),
        )
    if errors:
        return NoClaim(f"no usable formula in step: {errors[0]}")
    return NoClaim("no formula found in step")
