"""The `z3_arith` annotator: one label per step from `verifiers.arithmetic`, with provenance."""

from __future__ import annotations

import pytest

from rmforge.annotators import build_annotator
from rmforge.annotators.z3_arith import Z3ArithmeticAnnotator
from tests.builders import make_item


def test_annotator_labels_every_step_with_provenance() -> None:
    steps = [
        "Janet's ducks lay 16 eggs; she eats 3 and bakes with 4.",
        "So she has 16 - 3 - 4 = <<16-3-4=9>>9 eggs left.",
        "She makes 9 * $2 = $20.",
        "#### 20",
    ]
    items = [make_item(steps), make_item(steps[:2], index=1)]
    annotator = Z3ArithmeticAnnotator()
    out = annotator.annotate(items, run_id="run-1")

    assert len(out.step_labels) == len(steps) + 2
    assert [(label.rollout_id, label.step_index) for label in out.step_labels] == [
        (items[0].rollout.rollout_id, i) for i in range(4)
    ] + [(items[1].rollout.rollout_id, i) for i in range(2)]
    for label in out.step_labels:
        assert label.annotator == "z3_arith"
        assert label.annotator_version == "3"
        assert label.config_hash == annotator.config_hash
        assert label.run_id == "run-1"
    first = out.step_labels[:4]
    assert [label.verdict for label in first] == ["unknown", "correct", "incorrect", "unknown"]
    assert [label.score for label in first] == [None, 1.0, 0.0, None]
    assert first[2].reason == "9 * 2 = 20 is false: 9 * 2 = 18"
    assert not out.outcome_labels and not out.critiques and not out.costs


def test_config_changes_labels_and_hash() -> None:
    strict = Z3ArithmeticAnnotator({"rounding_tolerance": False})
    assert strict.config_hash != Z3ArithmeticAnnotator().config_hash
    item = make_item(["10 / 3 = 3.33"])
    assert Z3ArithmeticAnnotator().annotate([item], "r").step_labels[0].verdict == "correct"
    assert strict.annotate([item], "r").step_labels[0].verdict == "incorrect"


def test_registry_and_strict_config() -> None:
    annotator = build_annotator("z3_arith", {"timeout_ms": 500})
    assert isinstance(annotator, Z3ArithmeticAnnotator)
    assert annotator.config.timeout_ms == 500
    with pytest.raises(ValueError):
        Z3ArithmeticAnnotator({"timeout": 5})
    with pytest.raises(ValueError):
        Z3ArithmeticAnnotator({"timeout_ms": 0})


def test_expensive_steps_are_unknown_and_the_batch_goes_on() -> None:
    steps = [
        "She has 16 - 3 - 4 = 8 eggs left.",
        r"$" + r"\frac{1}{" * 2000 + "2" + "}" * 2000 + " = 3$",
        r"The answer is \boxed{" + "7" * 100_000 + "}.",
        "(" * 5000 + "1" + ")" * 5000 + " = 1",
        "Then 9 * $2 = $18.",
    ]
    labels = Z3ArithmeticAnnotator().annotate([make_item(steps)], "r").step_labels
    assert [label.verdict for label in labels] == ["incorrect", "unknown", "unknown", "unknown", "correct"]
    assert all(label.reason.startswith("not checked:") for label in labels[1:4])


def test_a_checker_error_on_one_step_is_unknown_with_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fault injection: whatever the checker raises on one step, the other steps are labelled.
    import rmforge.annotators.z3_arith as z3_arith

    checker = z3_arith.label_step

    def failing_on_the_second_step(step: str, **kwargs: object) -> tuple[str, str]:
        if step == "boom":
            raise RecursionError("maximum recursion depth exceeded")
        return checker(step, **kwargs)

    monkeypatch.setattr(z3_arith, "label_step", failing_on_the_second_step)
    labels = Z3ArithmeticAnnotator().annotate([make_item(["2 + 2 = 5", "boom", "2 + 2 = 4"])], "r").step_labels
    assert [label.verdict for label in labels] == ["incorrect", "unknown", "correct"]
    assert labels[1].reason == "checker error: RecursionError: maximum recursion depth exceeded"
