"""Procedural FOLIO-like problems: determinism, Z3-verified labels, importer."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

import rmforge.problems.logic as lp
from rmforge.annotators.base import AnnotationInput
from rmforge.annotators.z3_logic import Z3LogicAnnotator
from rmforge.problems.logic import generate_logic_problems, logic_problem_from_record
from rmforge.schemas.records import Problem
from rmforge.verifiers.logic.entailment import entailment
from rmforge.verifiers.logic.fol import parse_ast
from tests.builders import make_rollout

GOLD = {"true": "True", "false": "False", "uncertain": "Uncertain"}


@pytest.fixture(scope="module")
def fifty() -> list[Problem]:
    return generate_logic_problems(50, seed=7)


def test_generation_is_deterministic(fifty: list[Problem]) -> None:
    again = generate_logic_problems(50, seed=7)
    assert [p.model_dump() for p in again] == [p.model_dump() for p in fifty]
    # problem i depends only on (seed, i)
    assert [p.model_dump() for p in generate_logic_problems(10, seed=7)] == [p.model_dump() for p in fifty[:10]]
    other = generate_logic_problems(10, seed=8)
    assert {p.problem_id for p in other}.isdisjoint({p.problem_id for p in fifty})


def test_fifty_labels_verified_by_z3(fifty: list[Problem]) -> None:
    labels = []
    for p in fifty:
        meta = json.loads(p.metadata)
        assert set(meta) == {"premises", "conclusion", "label"}
        assert entailment(meta["premises"], meta["conclusion"]) == meta["label"]  # independent re-check
        assert p.gold_answer == GOLD[meta["label"]]
        for step in p.reference_steps:
            assert entailment(meta["premises"], step) == "true", (p.question, step)
        labels.append(meta["label"])
    counts = Counter(labels)
    assert set(counts) == {"true", "false", "uncertain"}
    assert max(counts.values()) - min(counts.values()) <= 1  # balanced


def test_problem_records(fifty: list[Problem]) -> None:
    assert len({p.problem_id for p in fifty}) == 50
    for p in fifty:
        meta = json.loads(p.metadata)
        assert p.problem_id == Problem.make_id(p.question, p.gold_answer)
        assert (p.source, p.domain) == ("generated:logic", "logic")
        assert p.difficulty is not None and 1 <= p.difficulty <= 3
        assert len(p.reference_steps) >= p.difficulty
        # the question shows every premise as a sentence and a formula, and the conclusion
        for formula in meta["premises"]:
            assert f"FOL: {formula}" in p.question
        assert f"FOL: {meta['conclusion']}" in p.question
        assert "True, False, or Uncertain" in p.question
        assert len(re.findall(r"^\d+\. [A-Z]", p.question, re.M)) == len(meta["premises"])


def test_vocabulary_and_constructs_vary(fifty: list[Problem]) -> None:
    formulas = [f for p in fifty for f in json.loads(p.metadata)["premises"]]
    text = "\n".join(formulas)
    for symbol in ("∀", "∃", "→", "∧", "∨", "⊕", "¬"):
        assert symbol in text, symbol
    predicates = set(re.findall(r"([A-Z]\w*)\(", text))
    subjects = set(re.findall(r"\((\w+)[,)]", text)) - {"x"}
    assert len(predicates) >= 25 and len(subjects) >= 15
    assert {p.difficulty for p in fifty} == {1, 2, 3}
    for f in formulas:
        parse_ast(f)  # every premise is valid syntax
    assert max(len(json.loads(p.metadata)["premises"]) for p in fifty) >= 8  # distractors


def test_depth_bounds() -> None:
    deep = generate_logic_problems(6, seed=3, min_depth=5, max_depth=6)
    assert {p.difficulty for p in deep} <= {5, 6}
    assert all(len(p.reference_steps) >= 5 for p in deep)
    with pytest.raises(ValueError):
        generate_logic_problems(1, min_depth=3, max_depth=2)
    with pytest.raises(ValueError):
        generate_logic_problems(1, max_depth=lp.MAX_DEPTH + 1)
    assert generate_logic_problems(0) == []


def test_mislabelled_generation_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force every conclusion to the chain's end (a "true" conclusion) whatever the label.
    monkeypatch.setattr(lp, "_conclusion", lambda b, label, final, other: (final.formula(b.const), "x"))
    with pytest.raises(AssertionError, match="Z3 says 'true'"):
        generate_logic_problems(3, seed=0)


def test_reference_steps_are_labelled_correct_by_the_annotator(fifty: list[Problem]) -> None:
    items = []
    for i, p in enumerate(fifty[:15]):
        steps = [f"Step {k + 1}: {s}" for k, s in enumerate(p.reference_steps)] + [f"Answer: {p.gold_answer}"]
        items.append(AnnotationInput(problem=p, rollout=make_rollout(p, "\n".join(steps), index=i), steps=steps))
    labels = Z3LogicAnnotator().annotate(items, "r").step_labels
    assert len(labels) == sum(len(it.steps) for it in items)
    assert all(lab.verdict == "correct" for lab in labels), [lab.reason for lab in labels if lab.verdict != "correct"]


@pytest.mark.parametrize(
    "given, label, gold",
    [("True", "true", "True"), ("false", "false", "False"), ("Uncertain", "uncertain", "Uncertain"),
     ("Unknown", "uncertain", "Uncertain"), (True, "true", "True")],
)  # fmt: skip
def test_record_import_normalises_labels(given: object, label: str, gold: str) -> None:
    premises = ["∀x (Dog(x) → Animal(x))", "Dog(rex)"]
    p = logic_problem_from_record(premises, "Animal(rex)", given)  # type: ignore[arg-type]
    assert json.loads(p.metadata)["label"] == label
    assert p.gold_answer == gold
    assert (p.domain, p.source, p.difficulty) == ("logic", "folio", None)


def test_record_import_shapes() -> None:
    p = logic_problem_from_record(
        "∀x (Dog(x) → Animal(x))\nDog(rex)\n",
        "Animal(rex)",
        source="folio:validation",
        premises_nl=["All dogs are animals.", "Rex is a dog."],
        conclusion_nl="Rex is an animal.",
    )
    meta = json.loads(p.metadata)
    assert meta == {"premises": ["∀x (Dog(x) → Animal(x))", "Dog(rex)"], "conclusion": "Animal(rex)"}
    assert p.gold_answer is None and p.source == "folio:validation"
    assert "1. All dogs are animals.\n   FOL: ∀x (Dog(x) → Animal(x))" in p.question
    assert "Conclusion: Rex is an animal." in p.question
    assert p.problem_id == Problem.make_id(p.question, None)
    with pytest.raises(ValueError, match="label"):
        logic_problem_from_record(["P(a)"], "P(a)", "maybe")
    with pytest.raises(ValueError):
        logic_problem_from_record([], "P(a)")
