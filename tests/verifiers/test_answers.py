"""Known-answer tests for the final-answer checker (extraction, grading, bounds)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from rmforge.verifiers import answers
from rmforge.verifiers.answers import GradeResult, extract_final_answer, grade_response
from rmforge.verifiers.bounded import BoundedPool, CheckFailed, CheckTimeout

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
    # No final answer, and the prose fallback reads numbers only: the checker cannot tell.
    ("It is true that cats are mammals.", "True", "unknown"),
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


def test_finished_response_with_no_answer_is_unknown_unless_the_format_was_demanded() -> None:
    response = "Let me think... 72 maybe"
    assert grade_response(response, "72") == GradeResult("unknown", None, "no final answer found")
    demanded = grade_response(response, "72", missing_answer="incorrect")
    assert demanded == GradeResult("incorrect", None, "no final answer found")


@pytest.mark.parametrize("response", ["", "  \n\n "])
def test_empty_response_is_incorrect(response: str) -> None:
    assert grade_response(response, "72") == GradeResult("incorrect", None, "empty response")


@pytest.mark.parametrize(
    ("response", "finish_reason"),
    [
        (r"\boxed{72}", "stop"),
        (r"\boxed{72}", "length"),
        ("", "stop"),
        ("So she has 8 left.", "stop"),
        ("Let me", "length"),
    ],
)
def test_without_gold_every_response_is_unknown(response: str, finish_reason: str) -> None:
    for gold in (None, ""):
        result = grade_response(response, gold, finish_reason=finish_reason, missing_answer="incorrect")
        assert result.verdict == "unknown"
        assert result.reason == "no gold answer"


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


def test_unparseable_prediction_is_unknown() -> None:
    # Text math-verify cannot read is no evidence of a wrong answer.
    result = grade_response("The answer is ???", "72")
    assert result.verdict == "unknown"
    assert result.reason == "unparseable answer"


@pytest.mark.parametrize(
    "response, gold",
    [
        # ProcessBench gsm8k-319: the humans accept it for the gold 10 (4 + 6 boxes left).
        (r"Finally, Tim is left with **\boxed{4 blue shoe boxes and 6 red shoe boxes}** in his box.", "10"),
        ("The answer is 3 apples and 5 pears.", "8"),
    ],
)
def test_words_naming_several_numbers_none_the_gold_are_unknown(response: str, gold: str) -> None:
    result = grade_response(response, gold)
    assert result.verdict == "unknown" and "several numbers" in result.reason


@pytest.mark.parametrize(
    "response, gold, verdict",
    [
        (r"The answer is \boxed{\frac{1}{2}}", "0.5", "correct"),  # one expression, two digits: not "several"
        (r"The answer is \boxed{(1, 3)}", "(1,3)", "correct"),  # the gold is no single number
        ("The answer is 12 apples.", "8", "incorrect"),  # one number with its unit
        (r"The answer is \boxed{1 \text{ and } 1/3}", "2", "incorrect"),  # gsm8k-106: a mixed number is one
    ],
)
def test_one_number_or_a_tuple_gold_is_still_graded(response: str, gold: str, verdict: str) -> None:
    assert grade_response(response, gold).verdict == verdict


def test_checker_exception_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def call(self, *args: object, timeout_s: float) -> object:
            raise CheckFailed("RecursionError: maximum recursion depth exceeded")

    answers._bounded_compare.cache_clear()
    monkeypatch.setattr(answers, "_MATH_VERIFY", Broken())
    result = grade_response(r"\boxed{\sqrt{2}}", "7")
    assert result.verdict == "unknown"
    assert result.reason == "checker error: RecursionError: maximum recursion depth exceeded"


@pytest.mark.slow  # waits out a 1 s checker deadline, then a fresh worker
def test_checker_timeout_is_unknown() -> None:
    # A tower of powers that sympy cannot finish evaluating within one second.
    result = grade_response(r"\boxed{9^{9^{9^{9}}}}", "2", timeout_s=1)
    assert result == GradeResult("unknown", "9^{9^{9^{9}}}", "checker timeout after 1 s")


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


# --------------------------------------------------------------- answers stated in prose

# Last sentences of real solutions from ProcessBench's GSM8K split that the human
# annotators mark as right, with their gold answers; (question, last sentence, gold).
PROSE_ANSWERS_OF_RIGHT_SOLUTIONS = [
    ("How long did it take James to walk to the store?", "So, it took James 2 hours to walk to the store.", "2"),
    ("How much money does Raymond have left?", "So, after all his transactions, Raymond has $8 left.", "8"),
    ("How many legs do the tables have?", "Therefore, the restaurant's tables have a total of 310 legs.", "310"),
    ("How far east is Elvis?", "Elvis is 54 miles east of his house after completing his journey.", "54"),
    ("What will it cost?", r"Therefore, the total cost for Angela's installations will be \$324.", "324"),
    ("How many tomatoes?", "Therefore, Freda used **12 tomatoes** to make her batch of tomato sauce.", "12"),
    ("How much will he make?", r"Thus, Charlie will make a total of \(\$440\) for the day.", "440"),
    ("How tall is the fourth child?", r"The fourth child is \(69 + 3 = 72\) inches tall.", "72"),
    (
        "What is the volume of Timothy's locker?",
        "Therefore, Timothy's locker is:\n"
        r"\[ \text{Volume of Timothy's locker} = 20 \times 2 = 40 \text{ cubic inches} \]",
        "40",
    ),
    (
        "Charisma meditates and does yoga every day for 4 weeks. How many hours in total?",
        r"\[14 \text{ hours (meditation)} + 20 \text{ hours (yoga)} = 34 \text{ hours}\] "
        "So, Charisma spends a total of 34 hours on meditation and yoga practice in 4 weeks.",
        "34",
    ),
    (
        "How much change did Verna receive?",
        "Therefore, Verna received $7.00 in change. **Answer:** Verna received $7.00 in change.",
        "7",
    ),
]


@pytest.mark.parametrize(("question", "last_sentence", "gold"), PROSE_ANSWERS_OF_RIGHT_SOLUTIONS)
def test_answer_stated_in_prose_is_read(question: str, last_sentence: str, gold: str) -> None:
    response = "Step 1: 3 + 4 = 7\n\n" + last_sentence
    right = grade_response(response, gold, question=question)
    assert right.verdict == "correct", right
    assert right.reason == "equivalent to gold (answer read from the last sentence)"
    # The same sentence against another gold is a decided wrong answer, not a lucky match.
    wrong = grade_response(response, str(int(gold) + 1), question=question)
    assert wrong.verdict == "incorrect", wrong


def test_escaped_boxed_number_is_read() -> None:
    # ProcessBench GSM8K: "The final answer is: \boxed{\15}" for a gold 15 (a mangled `\$15`).
    response = r"Therefore, Annika has $15 left. The final answer is: \boxed{\15}"
    assert grade_response(response, "15").verdict == "correct"
    assert grade_response(response, "16").verdict == "incorrect"


@pytest.mark.parametrize(
    "last_sentence",
    [
        "Let me check 3 + 4.",  # announces work, claims nothing
        "So, let's compute 5 + 2.",
        "We need to find 5 + 2.",
        "If she sells 3 more, she has 12.",  # a supposition
        "The answer might be 7.",  # a hedge
        "Is the total 7?",  # a question
        "The total number of apples is:",  # the result never came
        "So she has 7 apples on Monday and 8 on Tuesday.",  # two results: ambiguous
        r"\[ 3 + 4 = 7 \]",  # working shown, not a sentence
        "That is how we solve it.",  # no number at all
    ],
)
def test_prose_without_an_asserted_result_is_no_answer(last_sentence: str) -> None:
    response = "Tom has 3 apples and buys 4 more.\n\n" + last_sentence
    result = grade_response(response, "7", question="Tom has 3 apples and buys 4 more. How many?")
    assert result == GradeResult("unknown", None, "no final answer found")


def test_numbers_given_by_the_question_are_not_the_result() -> None:
    response = "So, she walks 12 miles in 3 days."
    assert grade_response(response, "12", question="She walks for 3 days. How far?").verdict == "correct"
    # Without the question, 12 and 3 are two candidates: no claim to grade.
    assert grade_response(response, "12").verdict == "unknown"


def test_prose_is_read_only_against_a_numeric_gold() -> None:
    # "length 2" is no claim about an interval; a careful grader would not read one.
    result = grade_response("So the interval has length 2.", "(1,3]")
    assert result == GradeResult("unknown", None, "no final answer found")
    assert grade_response("So the probability is 1/2.", r"\frac{1}{2}").verdict == "correct"


def test_marked_answer_wins_over_prose() -> None:
    response = "So she has 8 apples left.\nThe answer is 9."
    assert grade_response(response, "8").verdict == "incorrect"


@pytest.mark.parametrize(
    ("last_sentence", "expected"),
    [
        ("So, it took James 2 hours.", "2"),
        ("Therefore she has $15 left.", "15"),
        ("The total is 42.", "42"),
        ("The total is 1,250 dollars.", "1,250"),
        ("So the answer is about 12.5% of the total.", "12.5%"),
        ("Let me check 3 + 4.", None),
        ("", None),
    ],
)
def test_prose_answer(last_sentence: str, expected: str | None) -> None:
    assert answers.prose_answer("Some working.\n" + last_sentence) == expected


# ----------------------------------------------------------- answers to one another


@pytest.mark.parametrize(
    ("first", "second", "domain", "expected"),
    [
        ("1/2", "0.5", "math", True),
        (r"\frac{1}{2}", "0.5", "math", True),
        ("0.5", r"\frac{1}{2}", "math", True),
        (r"\$1,000", "1000", "math", True),
        (r"\frac{1}{2}", "0.6", "math", False),
        ("Sunday", r"\text{sunday}", "math", True),
        ("Sunday", "Monday", "math", False),
        ("True, since every cat is a mammal", "true", "logic", True),
        ("True", "False", "logic", False),
        ("???", "7", "math", None),
        ("7", "???", "math", None),
    ],
)
def test_answers_equivalent(first: str, second: str, domain: str, expected: bool | None) -> None:
    assert answers.answers_equivalent(first, second, domain=domain) is expected


def test_normalised_answer_merges_only_what_looks_alike() -> None:
    assert answers.normalised_answer(r"\$1,000.") == answers.normalised_answer("1000")
    assert answers.normalised_answer("**True**", "logic") == answers.normalised_answer("true", "logic")
    # Equivalent but written differently: the key differs, math-verify decides.
    assert answers.normalised_answer("1/2") != answers.normalised_answer("0.5")
    assert answers.normalised_answer("25%") != answers.normalised_answer("25")


# -------------------------------------------------------------------------- bounds


def test_unicode_digits_grade_as_ascii() -> None:
    assert grade_response(r"\boxed{٧}", "7").verdict == "correct"
    assert grade_response(r"The answer is ７２.", "72").verdict == "correct"
    assert grade_response(r"\boxed{−3}", "-3").verdict == "correct"  # unicode minus
    assert grade_response(r"\boxed{٨}", "7").verdict == "incorrect"


def test_plain_numbers_take_the_fast_path_and_agree_with_math_verify() -> None:
    answers._bounded_compare.cache_clear()
    for response, gold, verdict in [
        (r"\boxed{72}", "72.0", "correct"),
        (r"\boxed{-0.5}", "-0.5", "correct"),
        (r"\boxed{12.5\%}", "12.5", "correct"),
        (r"\boxed{25\%}", "0.25", "correct"),
        (r"\boxed{123456789012345678}", "123456789012345679", "incorrect"),
    ]:
        assert grade_response(response, gold).verdict == verdict, (response, gold)
    assert answers._bounded_compare.cache_info().misses == 0  # no worker call


def test_huge_boxed_number_is_decided_quickly() -> None:
    digits = "9" * 100_000
    assert grade_response("\\boxed{" + digits + "}", "7").verdict == "incorrect"
    assert grade_response("\\boxed{" + digits + "}", digits).verdict == "correct"


@pytest.mark.parametrize(
    "answer",
    ["\\frac{1}{" * 2000 + "2" + "}" * 2000, "x^{" * 500 + "2" + "}" * 500, "1+" * 600 + "1"],
)
def test_over_long_symbolic_answer_is_unknown(answer: str) -> None:
    result = grade_response("\\boxed{" + answer + "}", "7")
    assert result.verdict == "unknown"
    assert result.reason.startswith("answer too long to check")


@pytest.mark.slow  # waits out a 1 s checker deadline, then a fresh worker
@pytest.mark.parametrize("answer", [r"9^{9^{9^{9}}}", r"100000000!"])
def test_expensive_answer_times_out_off_the_main_thread(answer: str) -> None:
    results: list[GradeResult] = []
    thread = threading.Thread(target=lambda: results.append(grade_response(f"\\boxed{{{answer}}}", "2", timeout_s=1)))
    thread.start()
    thread.join(timeout=60)
    assert results == [GradeResult("unknown", answer, "checker timeout after 1 s")]


def test_answer_beyond_the_scan_window_is_unknown() -> None:
    response = r"\boxed{7}" + "x" * answers.MAX_SCAN_CHARS
    result = grade_response(response, "7")
    assert result.verdict == "unknown"
    assert result.reason.startswith("no final answer in the last")
    # The same text with the answer in the window is decided.
    assert grade_response(response + r" \boxed{7}", "7").verdict == "correct"


@pytest.mark.parametrize(
    "text",
    [
        "####" + " " * 200_000 + "x",  # trailing-space backtracking
        "The answer is" + " " * 200_000 + "\n",
        "\\boxed{" * 30_000,  # unbalanced boxes
        "$" * 200_000,
        "Answer:" + "*" * 100_000 + "\n" + "A: " * 50_000,
    ],
)
def test_extraction_is_linear_on_adversarial_text(text: str) -> None:
    start = time.monotonic()
    extract_final_answer(text)
    assert time.monotonic() - start < 5  # quadratic: minutes
    assert grade_response(text, "7").verdict in {"incorrect", "unknown"}  # and no crash


# ------------------------------------------------------------------ bounded worker


def test_worker_reports_an_exception_and_survives() -> None:
    pool = BoundedPool("json:loads", size=1)
    try:
        with pytest.raises(CheckFailed, match="JSONDecodeError"):
            pool.call("{", timeout_s=30)
        assert pool.call("[1]", timeout_s=30) == [1]
    finally:
        pool.close()


def test_worker_is_killed_at_the_deadline_and_replaced() -> None:
    pool = BoundedPool("time:sleep", size=1)
    try:
        pool.call(0, timeout_s=30)  # started
        start = time.monotonic()
        with pytest.raises(CheckTimeout, match=r"after 0\.5 s"):
            pool.call(60, timeout_s=0.5)
        assert time.monotonic() - start < 5
        assert pool.call(0, timeout_s=30) is None
    finally:
        pool.close()


def test_worker_memory_is_bounded() -> None:
    pool = BoundedPool("builtins:bytearray", memory_mb=512, size=1)
    try:
        with pytest.raises(CheckFailed, match="MemoryError"):
            pool.call(4 * 1024**3, timeout_s=30)
    finally:
        pool.close()
