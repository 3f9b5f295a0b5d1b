"""The FOLIO-notation parser (verifiers/logic/fol.py) and Z3 entailment (verifiers/logic/entailment.py)."""

from __future__ import annotations

import pytest
import z3

from rmforge.verifiers.logic.entailment import entailment, entailment_with_reason
from rmforge.verifiers.logic.fol import (
    Atom,
    Binary,
    Const,
    Equals,
    FOLParseError,
    Not,
    Quantifier,
    SymbolTable,
    Var,
    format_formula,
    parse_ast,
    parse_formula,
)

P, Q, R, S = (Atom(n) for n in "PQRS")


def atom(pred: str, *args: str) -> Atom:
    return Atom(pred, tuple(Var(a) if a in "xyz" else Const(a) for a in args))


# --------------------------------------------------------------------------- parser


@pytest.mark.parametrize(
    "ascii_text, unicode_text",
    [
        ("forall x (Student(x) -> Smart(x))", "∀x (Student(x) → Smart(x))"),
        ("all x. Student(x) => Smart(x)", "∀x (Student(x) → Smart(x))"),
        ("exists x (Dog(x) & ~Cat(x))", "∃x (Dog(x) ∧ ¬Cat(x))"),
        ("exists x: Dog(x) and not Cat(x)", "∃x (Dog(x) ∧ ¬Cat(x))"),
        ("P | !Q", "P ∨ ¬Q"),
        ("P or Q and R", "P ∨ Q ∧ R"),
        ("P xor Q", "P ⊕ Q"),
        ("P ^ Q", "P ⊕ Q"),
        ("P <-> Q", "P ↔ Q"),
        ("P <=> Q", "P ↔ Q"),
        ("forall x exists y Likes(x, y)", "∀x ∃y Likes(x, y)"),
        ("\\forall x (P(x) \\to \\neg Q(x))", "∀x (P(x) → ¬Q(x))"),
        ("ALL x (P(x) IMPLIES Q(x))", "∀ x (P(x) → Q(x))"),
    ],
)
def test_ascii_and_unicode_spellings_agree(ascii_text: str, unicode_text: str) -> None:
    assert parse_ast(ascii_text) == parse_ast(unicode_text)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("P ∨ Q ∧ R", Binary("or", P, Binary("and", Q, R))),
        ("P ∧ Q ∨ R", Binary("or", Binary("and", P, Q), R)),
        ("P ⊕ Q ∨ R", Binary("or", Binary("xor", P, Q), R)),  # ⊕ binds tighter than ∨
        ("P ∧ Q ⊕ R", Binary("xor", Binary("and", P, Q), R)),  # ... and looser than ∧
        ("P → Q → R", Binary("implies", P, Binary("implies", Q, R))),  # right-associative
        ("P ∨ Q → R", Binary("implies", Binary("or", P, Q), R)),
        ("P ↔ Q → R", Binary("iff", P, Binary("implies", Q, R))),
        ("¬P ∧ Q", Binary("and", Not(P), Q)),
        ("¬(P ∧ Q)", Not(Binary("and", P, Q))),
        ("¬¬P", Not(Not(P))),
        ("P ∧ Q ∧ R", Binary("and", Binary("and", P, Q), R)),
        ("[P ∨ Q] ∧ {R}", Binary("and", Binary("or", P, Q), R)),
    ],
)
def test_precedence(text: str, expected: object) -> None:
    assert parse_ast(text) == expected


def test_quantifier_scope_follows_folio_convention() -> None:
    body = Binary("implies", atom("P", "x"), atom("Q", "x"))
    # a quantifier scopes over the next parenthesised formula only ...
    assert parse_ast("∀x (P(x) → Q(x)) ∧ R(a)") == Binary("and", Quantifier("forall", "x", body), atom("R", "a"))
    assert parse_ast("∀x P(x) ∧ R(a)") == Binary("and", Quantifier("forall", "x", atom("P", "x")), atom("R", "a"))
    # ... while a dot or colon extends it as far right as possible
    for text in ("∀x. P(x) → Q(x)", "∀x: P(x) → Q(x)", "∀ x (P(x) → Q(x))", "∀x(P(x) → Q(x))"):
        assert parse_ast(text) == Quantifier("forall", "x", body), text


def test_variable_outside_its_scope_is_an_error_not_a_constant() -> None:
    with pytest.raises(FOLParseError, match="outside the scope") as info:
        parse_ast("∀x P(x) → Q(x)")
    assert info.value.position == len("∀x P(x) → Q(")


def test_nested_quantifiers_and_multi_variable_binders() -> None:
    inner = atom("Likes", "x", "y")
    assert parse_ast("∀x ∃y Likes(x, y)") == Quantifier("forall", "x", Quantifier("exists", "y", inner))
    both = Quantifier("forall", "x", Quantifier("forall", "y", Binary("implies", inner, atom("Likes", "y", "x"))))
    assert parse_ast("∀x, y (Likes(x, y) → Likes(y, x))") == both
    assert parse_ast("∀x ∀y (Likes(x, y) → Likes(y, x))") == both
    # ∀∃ does not give ∃∀, the converse does
    assert entailment(["∀x ∃y Likes(x, y)"], "∃y ∀x Likes(x, y)") == "uncertain"
    assert entailment(["∃y ∀x Likes(x, y)"], "∀x ∃y Likes(x, y)") == "true"


def test_constants_propositions_and_symbol_sharing() -> None:
    f = parse_ast("Likes(x, Harry)")  # free x and Harry: both constants
    assert f == Atom("Likes", (Const("x"), Const("Harry")))
    table = SymbolTable()
    a = parse_formula("Student(rina) ∧ Raining", table)
    b = parse_formula("Smart(rina) ∨ ¬Raining", table)
    assert z3.eq(a.arg(0).arg(0), b.arg(0).arg(0))  # the same `rina`
    assert z3.eq(a.arg(1), b.arg(1).arg(0))  # the same proposition
    assert a.arg(1).sort() == z3.BoolSort()
    assert a.arg(0).arg(0).sort().name() == "Entity"


def test_arity_mismatch_names_the_predicate() -> None:
    with pytest.raises(FOLParseError, match="'Likes'"):
        parse_ast("Likes(a, b) ∧ Likes(a)")
    table = SymbolTable()
    parse_formula("Owns(rina, car)", table)
    with pytest.raises(FOLParseError, match=r"'Owns'.*1 argument.*2 arguments"):
        parse_formula("∀x (Owns(x) → Rich(x))", table)
    with pytest.raises(FOLParseError, match="'rina'"):
        parse_formula("rina ∧ P", table)  # a constant used as a proposition
    # a failed formula leaves the table untouched
    assert table.signature("Rich") is None


@pytest.mark.parametrize(
    "text, reason, position",
    [
        ("P(a) ∧ ∧ Q(a)", "unexpected '∧'", 7),
        ("P(a) ∧", "unexpected end of formula", 6),
        ("(P(a) Q(a))", "')' to close", 6),
        ("P(a] ∨ Q(a)", "does not match", 3),
        ("P(a) $ Q(a)", "unexpected character '$'", 5),
        ("Likes(x, mother(y))", "function terms", 9),
        ("∀ (P(x))", "variable name", 2),
        ("", "empty formula", 0),
    ],
)
def test_parse_errors_have_reason_and_position(text: str, reason: str, position: int) -> None:
    with pytest.raises(FOLParseError) as info:
        parse_formula(text)
    assert reason in info.value.reason
    assert info.value.position == position
    assert f"position {position}" in str(info.value)


@pytest.mark.parametrize(
    "typo, meant",
    [
        ("∀x (Student(x) → Smart(x)", "∀x (Student(x) → Smart(x))"),  # never closed
        ("∀x (P(x) → (Q(x) ∨ R(x)", "∀x (P(x) → (Q(x) ∨ R(x)))"),
        ("∀x (Student(x) → Smart(x)))", "∀x (Student(x) → Smart(x))"),  # closed twice
        ("Rich(a) ∨ Poor(a)) ∧ Happy(a)", "(Rich(a) ∨ Poor(a)) ∧ Happy(a)"),  # never opened
    ],
)
def test_unbalanced_brackets_read_as_closing_at_the_end_or_opening_at_the_start(typo: str, meant: str) -> None:
    assert parse_ast(typo) == parse_ast(meant)


def test_apostrophes_inside_names_are_one_name_whichever_quote() -> None:
    assert parse_ast("∀x (Companies’Stocks(x) → Volatile(x))") == parse_ast("∀x (Companies'Stocks(x) → Volatile(x))")
    assert parse_ast("Companies’Stocks(apple)") == atom("Companies'Stocks", "apple")
    premises = ["∀x (Companies’Stocks(x) → Volatile(x))", "Companies'Stocks(apple)"]
    assert entailment(premises, "Volatile(apple)") == "true"
    assert entailment(premises, "¬Volatile(apple)") == "false"


def test_format_round_trips() -> None:
    texts = ["∀x (P(x) → (Q(x) ⊕ R(x)))", "¬(P(a) ∧ Q(b))", "∃x ∀y Likes(x, y)", "a = b ∨ ¬(a = c)"]
    for text in texts:
        assert parse_ast(format_formula(parse_ast(text))) == parse_ast(text)
    assert parse_ast("a ≠ b") == Not(Equals(Const("a"), Const("b")))


# --------------------------------------------------------------------------- entailment

SOCRATES = ["∀x (Human(x) → Mortal(x))", "Human(socrates)"]


def test_entailment_known_cases() -> None:
    assert entailment(SOCRATES, "Mortal(socrates)") == "true"  # modus ponens
    assert entailment(SOCRATES, "¬Mortal(socrates)") == "false"
    assert entailment(SOCRATES, "Mortal(plato)") == "uncertain"
    assert entailment(SOCRATES, "Philosopher(socrates)") == "uncertain"
    assert entailment(["P ⊕ Q", "P"], "¬Q") == "true"
    assert entailment(["P xor Q", "~P"], "Q") == "true"
    assert entailment(["P ∨ Q", "P"], "Q") == "uncertain"  # ∨ is inclusive
    assert entailment(["a = b", "Tall(a)"], "Tall(b)") == "true"
    assert entailment(["∀x (A(x) → B(x))", "¬B(c)"], "A(c)") == "false"  # modus tollens


def test_bad_syntax_is_unknown_with_reason() -> None:
    result = entailment_with_reason(SOCRATES, "Mortal(socrates) ∧")
    assert result.verdict == "unknown"
    assert result.reason and "conclusion does not parse" in result.reason and "position" in result.reason
    result = entailment_with_reason(["P(a)", "∀x (P(x) →)"], "P(a)")
    assert result.verdict == "unknown" and result.reason and result.reason.startswith("premise 2 does not parse")
    result = entailment_with_reason(["P(a, b)"], "P(a)")  # arity clash across formulas
    assert result.verdict == "unknown" and result.reason and "'P'" in result.reason


def test_inconsistent_premises_are_unknown() -> None:
    result = entailment_with_reason(SOCRATES + ["¬Mortal(socrates)"], "Mortal(socrates)")
    assert result.verdict == "unknown"
    assert result.reason == "premises are inconsistent"
    assert entailment(["P", "¬P"], "Q") == "unknown"


def test_solver_unknown_is_its_own_verdict() -> None:
    # A strict order without a maximal element has only infinite models: Z3 can neither
    # refute nor satisfy these premises, so it must answer unknown, never a label.
    infinite = [
        "∀x ∃y Less(x, y)",
        "∀x ¬Less(x, x)",
        "∀x ∀y ∀z (Less(x, y) ∧ Less(y, z) → Less(x, z))",
    ]
    result = entailment_with_reason(infinite, "Tall(a)", timeout_ms=300)
    assert result.verdict == "unknown"
    assert result.reason and "solver returned unknown" in result.reason


# Hand-written FOLIO-style stories (4-6 premises each).
COFFEE = [
    # All people who regularly drink coffee are dependent on caffeine.
    "∀x (DrinkRegularly(x, coffee) → IsDependentOn(x, caffeine))",
    # People regularly drink coffee, or they don't want to be addicted to caffeine, or both.
    "∀x (DrinkRegularly(x, coffee) ∨ ¬WantToBeAddictedTo(x, caffeine))",
    # Everyone who doesn't want to be addicted to caffeine is unaware that caffeine is a drug.
    "∀x (¬WantToBeAddictedTo(x, caffeine) → ¬AwareThatDrug(x, caffeine))",
    # Rina is either a student and unaware that caffeine is a drug, or neither.
    "¬(IsStudent(rina) ⊕ ¬AwareThatDrug(rina, caffeine))",
    # Rina is either dependent on caffeine and a student, or neither.
    "¬(IsDependentOn(rina, caffeine) ⊕ IsStudent(rina))",
]
PROFESSORS = [
    "∃x (Professor(x) ∧ Famous(x))",  # Some professors are famous.
    "∀x (Famous(x) → Rich(x))",  # All famous people are rich.
    "∀x (Rich(x) → ¬Humble(x))",  # No rich person is humble.
    "Professor(ann) ∧ Humble(ann)",  # Ann is a humble professor.
]
FRIENDS = [  # written in ASCII on purpose
    "forall x (LikesMusic(x) -> Likes(harry, x))",  # Harry likes everyone who likes music.
    "LikesMusic(bob)",  # Bob likes music.
    "forall x forall y (Likes(x, y) -> Knows(x, y))",  # People know everyone they like.
    "~Knows(harry, carol)",  # Harry does not know Carol.
    "forall x (Drummer(x) -> LikesMusic(x))",  # All drummers like music.
    "Drummer(dave) | Drummer(carol)",  # Dave or Carol is a drummer.
]


@pytest.mark.parametrize(
    "premises, conclusion, label",
    [
        (COFFEE, "IsStudent(rina)", "true"),  # the other case contradicts premises 1-3
        (COFFEE, "¬WantToBeAddictedTo(rina, caffeine) ∨ ¬AwareThatDrug(rina, caffeine)", "true"),
        (COFFEE, "AwareThatDrug(rina, caffeine)", "false"),
        (COFFEE, "DrinkRegularly(rina, coffee)", "uncertain"),
        (PROFESSORS, "∃x (Professor(x) ∧ ¬Humble(x))", "true"),
        (PROFESSORS, "∀x (Professor(x) → Humble(x))", "false"),
        (PROFESSORS, "Famous(ann)", "false"),
        (PROFESSORS, "∃x (Professor(x) ∧ Rich(x) ∧ x ≠ ann)", "true"),
        (PROFESSORS, "Rich(bea)", "uncertain"),
        (FRIENDS, "Knows(harry, bob)", "true"),
        (FRIENDS, "LikesMusic(carol)", "false"),
        (FRIENDS, "Drummer(dave)", "true"),  # disjunction elimination via Carol
        (FRIENDS, "Knows(bob, harry)", "uncertain"),
    ],
)
def test_folio_style_stories(premises: list[str], conclusion: str, label: str) -> None:
    assert entailment(premises, conclusion) == label
