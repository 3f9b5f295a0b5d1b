"""The z3_logic step annotator (the checker it calls: tests/verifiers/test_logic*.py)."""

from __future__ import annotations

import pytest

from rmforge.annotators import build_annotator
from rmforge.annotators.z3_logic import Z3LogicAnnotator
from tests.builders import make_item

STORY = ["∀x (Student(x) → Smart(x))", "Student(rina)", "∀x (Smart(x) → Happy(x))"]


def _logic_item(steps: list[str], premises: list[str], conclusion: str, label: str, **kw: object):
    return make_item(
        steps,
        question="Is the conclusion True, False or Uncertain?",
        gold_answer=label.capitalize(),
        domain="logic",
        metadata={"premises": premises, "conclusion": conclusion, "label": label},
        **kw,  # type: ignore[arg-type]
    )


def test_step_labels_valid_not_entailed_unparseable_and_answer() -> None:
    steps = [
        "Step 1: Therefore, Smart(rina) -- by premises 1 and 2",
        "Step 2: Tall(rina)",
        "Step 3: Rina is happy, obviously.",
        "Step 4: So ¬Happy(rina)",
        "Step 5: Happy(rina) because Smart(rina) and premise 3",
        "Step 6: Suppose ¬Happy(rina); then we get a contradiction.",
        "Answer: True",
    ]
    item = _logic_item(steps, STORY, "Happy(rina)", "true")
    out = Z3LogicAnnotator().annotate([item], "run-1")
    labels = out.step_labels
    assert [lab.step_index for lab in labels] == list(range(7))
    expected = ["correct", "incorrect", "unknown", "incorrect", "correct", "unknown", "correct"]
    assert [lab.verdict for lab in labels] == expected
    assert [lab.score for lab in labels] == [1.0, 0.0, None, 0.0, 1.0, None, 1.0]
    assert "not entailed" in (labels[1].reason or "") and "Tall" in (labels[1].reason or "")
    assert "no formula" in (labels[2].reason or "")
    assert "contradicts premises" in (labels[3].reason or "")
    assert "assumption" in (labels[5].reason or "")
    assert all(lab.annotator == "z3_logic" and lab.rollout_id == item.rollout.rollout_id for lab in labels)
    assert not out.outcome_labels


def test_only_correct_steps_become_context() -> None:
    premises = ["∀x (A(x) → B(x))", "A(c) ∨ A(d)"]
    steps = ["A(c)", "B(c)", "B(c) ∨ B(d)"]  # the first is a guess; the second leans on it
    labels = Z3LogicAnnotator().annotate([_logic_item(steps, premises, "B(c)", "uncertain")], "r").step_labels
    assert [lab.verdict for lab in labels] == ["incorrect", "incorrect", "correct"]


def test_hedged_steps_and_wrong_answer() -> None:
    steps = [
        "We cannot determine whether Tall(rina).",  # true: Tall is undetermined
        "It is uncertain whether Smart(rina).",  # wrong: it is entailed
        "Final answer: False",
    ]
    labels = Z3LogicAnnotator().annotate([_logic_item(steps, STORY, "Happy(rina)", "true")], "r").step_labels
    assert [lab.verdict for lab in labels] == ["correct", "incorrect", "incorrect"]
    assert "differs" in (labels[2].reason or "")


def test_folio_typos_in_premises_and_steps_are_read() -> None:
    # Curly apostrophes inside predicate names and a bracket never closed, as in FOLIO.
    premises = [
        "∀x (Companies’Stocks(x) → Volatile(x))",  # All companies' stocks are volatile.
        "∀x (Volatile(x) → ¬SuitableFor(x, retirees)",  # No volatile stock suits retirees.
        "Companies'Stocks(kO)",  # KO is a company's stock.
    ]
    steps = [
        "Step 1: Volatile(kO) -- by premises 1 and 3",
        "Step 2: Therefore, ¬SuitableFor(kO, retirees)",
        "Step 3: So SuitableFor(kO, retirees)",
        "Answer: False",
    ]
    item = _logic_item(steps, premises, "SuitableFor(kO, retirees)", "false")
    labels = Z3LogicAnnotator().annotate([item], "r").step_labels
    assert [lab.verdict for lab in labels] == ["correct", "correct", "incorrect", "correct"]


def test_problems_the_annotator_cannot_use_give_unknown() -> None:
    annotator = Z3LogicAnnotator()
    math_item = make_item(["3 + 4 = 7", "Answer: 7"])
    bad_premise = _logic_item(["P(a)"], ["P(a) ∧"], "P(a)", "true")
    inconsistent = _logic_item(["P(a)"], ["P(a)", "¬P(a)"], "P(a)", "true")
    no_metadata = make_item(["P(a)"], domain="logic")
    out = annotator.annotate([math_item, bad_premise, inconsistent, no_metadata], "r")
    reasons = [lab.reason for lab in out.step_labels]
    assert all(lab.verdict == "unknown" and lab.score is None for lab in out.step_labels)
    assert reasons[:2] == ["not a logic problem"] * 2
    assert reasons[2] and reasons[2].startswith("premise 1 does not parse")
    assert reasons[3] == "premises are inconsistent"
    assert reasons[4] and "no premises" in reasons[4]


def test_config_and_registry() -> None:
    annotator = build_annotator("z3_logic", {"timeout_ms": 100})
    assert isinstance(annotator, Z3LogicAnnotator)
    assert annotator.config.timeout_ms == 100
    assert annotator.config_hash != Z3LogicAnnotator().config_hash
    with pytest.raises(ValueError):
        Z3LogicAnnotator({"timeout": 5})
