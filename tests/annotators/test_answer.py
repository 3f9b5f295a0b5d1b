"""The `answer` annotator: one outcome label per rollout, with provenance."""

from __future__ import annotations

import pytest

from rmforge.annotators.answer import AnswerAnnotator
from tests.builders import make_item

# ---------------------------------------------------------------------- annotator


def test_annotator_labels_each_item_with_provenance() -> None:
    items = [
        make_item(["3 + 4 = 7", r"So \boxed{7}"], gold_answer="7"),
        make_item(["3 + 4 = 8", r"So \boxed{8}"], gold_answer="7"),
        make_item(["3 + 4 = 7", r"So \boxed{7}"], gold_answer=None),
        make_item([r"So \boxed{7}"], gold_answer="7", finish_reason="length"),
        make_item(["Answer: False"], gold_answer="False", domain="logic"),
    ]
    annotator = AnswerAnnotator()
    output = annotator.annotate(items, run_id="run-42")

    assert output.step_labels == []
    labels = output.outcome_labels
    assert [label.rollout_id for label in labels] == [item.rollout.rollout_id for item in items]
    assert [label.verdict for label in labels] == [
        "correct",
        "incorrect",
        "unknown",
        "incorrect",
        "correct",
    ]
    assert [label.score for label in labels] == [1.0, 0.0, None, 0.0, 1.0]
    assert [label.predicted_answer for label in labels] == ["7", "8", "7", "7", "False"]
    assert labels[2].reason == "no gold answer"
    assert labels[3].reason == "truncated"
    for label in labels:
        assert label.annotator == "answer"
        assert label.annotator_version == AnswerAnnotator.version
        assert label.config_hash == annotator.config_hash
        assert label.run_id == "run-42"
        assert label.model is None


def test_annotator_config_changes_the_hash() -> None:
    default = AnswerAnnotator()
    assert default.config.timeout_s == 5.0
    assert AnswerAnnotator({"timeout_s": 2.0}).config_hash != default.config_hash
    with pytest.raises(ValueError):
        AnswerAnnotator({"timeout": 2.0})  # unknown option


def test_annotator_empty_batch() -> None:
    output = AnswerAnnotator().annotate([], run_id="run-0")
    assert output.outcome_labels == []


def test_missing_answer_switch_decides_an_answerless_response() -> None:
    items = [make_item(["3 + 4 = 7", "Let me check that again."], gold_answer="7")]
    default = AnswerAnnotator().annotate(items, run_id="run-1").outcome_labels[0]
    demanded = AnswerAnnotator({"missing_answer": "incorrect"}).annotate(items, run_id="run-1").outcome_labels[0]
    assert (default.verdict, default.reason) == ("unknown", "no final answer found")
    assert (demanded.verdict, demanded.reason) == ("incorrect", "no final answer found")
    assert demanded.config_hash != default.config_hash


def test_annotator_passes_the_question_to_the_prose_reading() -> None:
    # "3 days" is given by the question, so "12 miles" is the sentence's result.
    item = make_item(["So, she walks 12 miles in 3 days."], question="She walks for 3 days. How far?", gold_answer="12")
    label = AnswerAnnotator().annotate([item], run_id="run-1").outcome_labels[0]
    assert (label.verdict, label.predicted_answer) == ("correct", "12")
