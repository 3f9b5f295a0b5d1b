"""Finding the formula a step of a logic solution derives (verifiers/logic/extract.py)."""

from __future__ import annotations

import pytest

from rmforge.verifiers.logic.extract import AnswerLine, Claim, NoClaim, extract_claim
from rmforge.verifiers.logic.fol import SymbolTable, format_formula, parse_ast, parse_formula


def _table(*formulas: str) -> SymbolTable:
    table = SymbolTable()
    for f in formulas:
        parse_formula(f, table)
    return table


STORY = ["∀x (Student(x) → Smart(x))", "Student(rina)", "∀x (Smart(x) → Happy(x))"]


def test_hypothetical_steps_are_flagged() -> None:
    for step in ["Suppose Tall(rina).", "Case 1: Tall(rina)", "If Student(rina), then Smart(rina)."]:
        found = extract_claim(step, _table(*STORY))
        assert isinstance(found, Claim) and found.hypothetical, step
    found = extract_claim("Therefore, Smart(rina).", _table(*STORY))
    assert isinstance(found, Claim) and not found.hypothetical


@pytest.mark.parametrize(
    "step, formula, negated, hedged",
    [
        ("Step 2: ∀x (Student(x) → Smart(x))", "∀x (Student(x) → Smart(x))", False, False),
        ("Step 3: Smart(rina)", "Smart(rina)", False, False),
        ("Therefore, Smart(rina).", "Smart(rina)", False, False),
        ("So Smart(rina) -- by modus ponens on premises 1 and 2", "Smart(rina)", False, False),
        ("Smart(rina) because Student(rina) ∧ ∀x (Student(x) → Smart(x))", "Smart(rina)", False, False),
        ("Since Student(rina), Smart(rina)", "Smart(rina)", False, False),
        ("Rina is a student and students are smart, so we conclude that Smart(rina).", "Smart(rina)", False, False),
        ("3. **Smart(rina) ∧ Student(rina)** (from step 1)", "Smart(rina) ∧ Student(rina)", False, False),
        ("- $Happy(rina)$", "Happy(rina)", False, False),
        ("It is not the case that Tall(rina).", "Tall(rina)", True, False),
        ("Happy(rina) is false.", "Happy(rina)", True, False),
        ("We cannot determine whether Tall(rina).", "Tall(rina)", False, True),
        ("It cannot be determined if Tall(rina) holds.", "Tall(rina)", False, True),
        ("forall x (Smart(x) -> Happy(x)) holds", "∀x (Smart(x) → Happy(x))", False, False),
        ("Thus smart(Rina), as premise 1 says", "Smart(rina)", False, False),  # case slips mapped
    ],
)
def test_extract_claim(step: str, formula: str, negated: bool, hedged: bool) -> None:
    found = extract_claim(step, _table(*STORY))
    assert isinstance(found, Claim), found
    assert format_formula(found.formula) == format_formula(parse_ast(formula))
    assert (found.negated, found.hedged) == (negated, hedged)


@pytest.mark.parametrize(
    "step, label",
    [("Answer: True", "true"), ("**Final answer:** Uncertain", "uncertain"), ("The answer is False.", "false"),
     ("Step 6: Answer: Unknown", "uncertain"), ("Therefore, the conclusion is true.", "true")],
)  # fmt: skip
def test_extract_answer_line(step: str, label: str) -> None:
    assert extract_claim(step, _table(*STORY)) == AnswerLine(label)  # type: ignore[arg-type]


@pytest.mark.parametrize("step", ["Rina is smart.", "Let us think about this and see.", "", "Smart(rina, bob)"])
def test_extract_nothing(step: str) -> None:
    assert isinstance(extract_claim(step, _table(*STORY)), NoClaim)
