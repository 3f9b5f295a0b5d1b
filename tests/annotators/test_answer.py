"""Known-answer tests for the final-answer verifier (extraction, grading, annotator)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import annotators.answer as answer_module
from annotators.answer import AnswerAnnotator, GradeResult, extract_final_answer, grade_response
from tests.builders import make_item

# ------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"So the result is \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
        (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),
        (r"nested \boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\fbox{7}", "7"),
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
        ("#### 1,000", "1,000"),
        ("The answer is 72.", "72"),
        ("The answer is 3.5.", "3.5"),
        (r"Therefore, the final answer is $\frac12$.", r"\frac12"),
        ("Final Answer: The final answer is $72$. I hope it is correct.", "72"),
        ("Final Answer: 18", "18"),
        ("Q: how many?\nA: 72", "72"),
        ("Answer: 72", "72"),
        ("**Answer:** 72", "72"),
        (r"The answer is \(5\).", "5"),
        ("The answer is $18.", "$18"),
        (r"The answer is $\$1,000$.", r"\$1,000"),
        ("The answer is 18 dollars.", "18 dollars"),
        (r"The final answer is $\boxed{72}$.", "72"),
        (r"Answer: \boxed{\text{False}}", r"\text{False}"),
        # The last marker wins, whatever its kind.
        (r"\boxed{71}. Wait, recheck: \boxed{72}", "72"),
        (r"\boxed{72} then \boxed{71}", "71"),
        ("#### 5\nActually the answer is 6.", "6"),
        (r"The answer is 6. Formally, \boxed{7}", "7"),
        # Commentary after the answer is not an answer.
        (r"\boxed{72}. We can check the answer is correct.", "72"),
        # No answer at all.
        ("I am not sure how to solve this.", None),
        ("", None),
        (r"Truncated \boxed{\frac{1}{2", None),
        (r"\boxed{}", None),
    ],
)
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


# ------------------------------------------------------------------------ math grading

MATH_CASES = [
    # (response, gold, verdict)
    # fractions and decimals, both the LaTeX path (boxed) and the plain-number path
    (r"\boxed{\frac{1}{2}}", "0.5", "correct"),
    ("The answer is 0.5", r"\frac{1}{2}", "correct"),
    (r"\boxed{\dfrac{3}{4}}", "0.75", "correct"),
    ("#### 3/4", r"\frac{3}{4}", "correct"),
    (r"\boxed{\frac{1}{3}}", "0.5", "incorrect"),
    ("The answer is 0.34", r"\frac{1}{3}", "incorrect"),
    # thousands separators, without breaking tuples / sets / intervals
    ("#### 1,000", "1000", "correct"),
    (r"\boxed{1{,}000}", "1000", "correct"),
    ("The answer is 1,000,000.", "1000000", "correct"),
    ("#### 1000", "1,000", "correct"),
    (r"\boxed{x = 1,000}", "1000", "correct"),
    (r"\boxed{1\,000}", "1000", "correct"),
    ("#### 1,001", "1000", "incorrect"),
    (r"\boxed{1,2}", "2,1", "correct"),
    (r"\boxed{1,2}", "12", "incorrect"),
    # units and currency
    ("The answer is $18.", "18", "correct"),
    (r"\boxed{\$18}", "18", "correct"),
    ("The answer is 18 dollars.", "18", "correct"),
    ("The answer is 18 apples.", "18", "correct"),
    ("The answer is 19 apples.", "18", "incorrect"),
    ("Answer: 5 cm", "5", "correct"),
    (r"\boxed{5\,\text{cm}}", "5", "correct"),
    (r"\boxed{12 \text{ square feet}}", "12", "correct"),
    (r"\boxed{90^\circ}", "90", "correct"),
    (r"\boxed{90^{\circ}}", "90", "correct"),
    (r"\boxed{45^\circ}", "90", "incorrect"),
    (r"\boxed{3 \text{ and } 4}", "3", "incorrect"),
    ("The answer is 3 and 4.", "3", "incorrect"),
    # percentages: a trailing percent sign is decoration when the other side has none
    (r"\boxed{25\%}", "25", "correct"),
    ("The answer is 25%.", "25", "correct"),
    ("The answer is 25 percent.", "25", "correct"),
    (r"\boxed{25}", r"25\%", "correct"),
    (r"\boxed{12.5\%}", "12.5", "correct"),
    (r"\boxed{0.125}", r"12.5\%", "correct"),
    (r"\boxed{0.25}", "25", "incorrect"),
    (r"\boxed{26\%}", "25", "incorrect"),
    # radicals: symbolic equality, but a rounded decimal is not exact
    (r"\boxed{\sqrt{8}}", r"2\sqrt{2}", "correct"),
    (r"\boxed{2\sqrt2}", r"\sqrt{8}", "correct"),
    (r"\boxed{2.828}", r"2\sqrt2", "incorrect"),
    (r"\boxed{\sqrt{6}}", r"2\sqrt{2}", "incorrect"),
    # intervals and sets
    (r"\boxed{(1, 3]}", "(1,3]", "correct"),
    (r"\boxed{[1, 3]}", "(1,3]", "incorrect"),
    (r"\boxed{(1, 3)}", "(1,3]", "incorrect"),
    (r"\boxed{\{2,1\}}", r"\{1,2\}", "correct"),
    (r"\boxed{\{1,3\}}", r"\{1,2\}", "incorrect"),
    # equations and symbolic constants
    (r"\boxed{x = 3}", "3", "correct"),
    (r"\boxed{3}", "x=3", "correct"),
    (r"\boxed{x = 4}", "3", "incorrect"),
    (r"\boxed{\pi/4}", r"\frac{\pi}{4}", "correct"),
    (r"\boxed{\frac{\pi}{4}}", r"\pi/4", "correct"),
    (r"\boxed{\frac{\pi}{2}}", r"\pi/4", "incorrect"),
    (r"\boxed{(x-1)(x+1)}", "x^2-1", "correct"),
    (r"\boxed{5!}", "120", "correct"),
    ("The answer is 120!", "120", "correct"),
    (r"\boxed{\$18.50}", "18.5", "correct"),
    ("#### 18.00", "18", "correct"),
    # negative numbers
    (r"\boxed{-3}", "-3", "correct"),
    ("#### -3", "-3", "correct"),
    (r"\boxed{3}", "-3", "incorrect"),
    (r"\boxed{-3}", "3", "incorrect"),
    # GSM8K and MATH formats, wrong answers, several answers (the last counts)
    ("48 + 24 = 72\n#### 72", "72", "correct"),
    ("A: 72", "72", "correct"),
    ("A: 71", "72", "incorrect"),
    (r"So the total is \boxed{72}.", "72", "correct"),
    (r"\boxed{71}", "72", "incorrect"),
    (r"First \boxed{71}, no: \boxed{72}", "72", "correct"),
    (r"First \boxed{72}, no: \boxed{71}", "72", "incorrect"),
    # gold written in other styles
    (r"\boxed{72}", "#### 72", "correct"),
    (r"\boxed{72}", "Natalia sold 48/2 = 24 clips.\n#### 72", "correct"),
    (r"\boxed{71}", "#### 72", "incorrect"),
    (r"\boxed{18}", "$18", "correct"),
    (r"\boxed{18}", r"\$18", "correct"),
    (r"\boxed{18}", "18 dollars", "correct"),
    (r"\boxed{0.75}", r"\boxed{\frac{3}{4}}", "correct"),
    (r"\boxed{0.75}", r"$\frac{3}{4}$", "correct"),
    # word answers compare as text, not as a product of symbols
    (r"\boxed{\text{Sunday}}", "Sunday", "correct"),
    (r"\boxed{sunday}", r"\text{Sunday}", "correct"),
    (r"\boxed{\text{Monday}}", "Sunday", "incorrect"),
    (r"\boxed{\text{Yadnus}}", "Sunday", "incorrect"),
]


@pytest.mark.parametrize(("response", "gold", "verdict"), MATH_CASES)
def test_grade_math(response: str, gold: str, verdict: str) -> None:
    result = grade_response(response, gold, finish_reason="stop")
    assert result.verdict == verdict, result
    assert result.predicted == extract_final_answer(response)


LOGIC_CASES = [
    ("The conclusion follows.\nAnswer: True", "True", "correct"),
    ("Answer: true.", "True", "correct"),
    ("**Answer:** TRUE", "True", "correct"),
    (r"\boxed{\text{False}}", "False", "correct"),
    (r"\boxed{False}", "false", "correct"),
    ("The answer is Uncertain.", "Uncertain", "correct"),
    ("Answer: True, because every cat is a mammal.", "True", "correct"),
    ("Answer: False", "True", "incorrect"),
    (r"\boxed{\text{True}}", "Uncertain", "incorrect"),
    ("Answer: Uncertain", "False", "incorrect"),
    ("Answer: Not true", "True", "incorrect"),
    ("It is true that cats are mammals.", "True", "incorrect"),  # no final answer
]


@pytest.mark.parametrize(("response", "gold", "verdict"), LOGIC_CASES)
def test_grade_logic(response: str, gold: str, verdict: str) -> None:
    assert grade_response(response, gold, domain="logic").verdict == verdict


# -------------------------------------------------------------- verdict standards


def test_truncated_response_is_incorrect_even_with_a_right_boxed_answer() -> None:
    result = grade_response(r"\boxed{72} and then more", "72", finish_reason="length")
    assert result == GradeResult("incorrect", "72", "truncated")
    # The same text, finished, is correct: the verdict comes from the finish reason.
    finished = grade_response(r"\boxed{72} and then more", "72", finish_reason="stop")
    assert finished.verdict == "correct"


def test_no_final_answer_is_incorrect_not_unknown() -> None:
    result = grade_response("Let me think... 72 maybe", "72")
    assert result == GradeResult("incorrect", None, "no final answer")


@pytest.mark.parametrize("gold", [None, "", "   "])
def test_missing_gold_is_unknown(gold: str | None) -> None:
    result = grade_response(r"\boxed{72}", gold)
    assert result.verdict == "unknown"
    assert result.reason == "no gold answer"
    assert result.predicted == "72"


@pytest.mark.parametrize("gold", [r"\frac{", "???"])
def test_unparseable_gold_is_unknown(gold: str) -> None:
    result = grade_response(r"\boxed{72}", gold)
    assert result.verdict == "unknown"
    assert result.reason.startswith("unparseable gold answer")


def test_unparseable_prediction_is_incorrect() -> None:
    result = grade_response("The answer is ???", "72")
    assert result.verdict == "incorrect"
    assert result.reason == "unparseable answer"


def test_checker_exception_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_verify(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("sympy exploded")

    monkeypatch.setattr(answer_module, "verify", broken_verify)
    result = grade_response(r"\boxed{72}", "72")
    assert result.verdict == "unknown"
    assert "sympy exploded" in result.reason


def test_checker_timeout_is_unknown() -> None:
    # A tower of powers that sympy cannot finish evaluating within one second.
    result = grade_response(r"\boxed{9^{9^{9^{9}}}}", "2", timeout_s=1)
    assert result == GradeResult("unknown", "9^{9^{9^{9}}}", "checker timeout")


def test_grading_works_outside_the_main_thread() -> None:
    # math-verify's signal.alarm timeout raises ValueError in threads unless disabled.
    results: list[GradeResult] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(grade_response(r"\boxed{\frac{2}{4}}", "0.5"))
            results.append(grade_response(r"\boxed{0.6}", "0.5"))
        except BaseException as error:  # noqa: BLE001  # surfaced by the assert below
            errors.append(error)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == []
    assert [result.verdict for result in results] == ["correct", "incorrect"]


def test_grade_result_is_immutable() -> None:
    result = grade_response(r"\boxed{1}", "1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.verdict = "incorrect"  # type: ignore[misc]


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
        assert label.annotator_version == "1"
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
