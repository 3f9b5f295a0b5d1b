"""Scoring labels against human first errors (tasks/evaluate.py), known answers."""

from tasks.evaluate import score_verdicts


def test_scores_against_a_hand_computed_example():
    labels = {"a": 1, "b": -1, "c": 0, "d": 2}  # human earliest wrong step, -1: all correct
    steps = {"a": 3, "b": 2, "c": 2, "d": 4}
    verdicts = {
        "a": {0: "correct", 1: "incorrect", 2: "incorrect"},  # right flag; step 2 is after the error: left out
        "b": {0: "correct", 1: "incorrect"},  # a false flag on a correct solution
        "c": {1: "incorrect"},  # flagged after the labelled step: predicts 1, wrong; flag undetermined
        # d: nothing decided: predicts -1, wrong
    }
    s = score_verdicts("x", "annotator", verdicts, steps, labels)
    assert (s.solutions, s.erroneous) == (4, 3)
    assert s.acc_erroneous == round(1 / 3, 4) and s.acc_correct == 0.0 and s.f1 == 0.0
    assert s.judged == {"incorrect_right": 1, "incorrect_wrong": 1, "correct_right": 2, "correct_wrong": 0}
    assert (s.incorrect_labels, s.incorrect_precision) == (2, 0.5)
    assert (s.correct_labels, s.correct_precision) == (2, 1.0)
    assert s.incorrect_recall == round(1 / 3, 4)
    assert s.coverage == round(6 / 11, 4)


def test_perfect_labels_score_one():
    labels = {"a": 1, "b": -1}
    verdicts = {"a": {0: "correct", 1: "incorrect"}, "b": {0: "correct", 1: "correct"}}
    s = score_verdicts("x", "policy", verdicts, {"a": 2, "b": 2}, labels)
    assert (s.f1, s.incorrect_precision, s.correct_precision, s.incorrect_recall, s.coverage) == (1.0, 1.0, 1.0, 1.0, 1.0)
