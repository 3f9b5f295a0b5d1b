"""Scoring labels against human first errors (tasks/evaluate.py), known answers."""

from rmforge.tasks.evaluate import score_verdicts


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
    assert s.judged == {
        "incorrect_right": 1,
        "incorrect_wrong": 1,
        "correct_right": 2,
        "correct_wrong": 0,
        "outcome_implied_correct_right": 0,
        "outcome_implied_correct_wrong": 0,
    }
    assert (s.incorrect_labels, s.incorrect_precision) == (2, 0.5)
    assert (s.correct_labels, s.correct_precision) == (2, 1.0)
    assert s.incorrect_recall == round(1 / 3, 4)
    assert s.coverage == round(6 / 11, 4)


def test_perfect_labels_score_one():
    labels = {"a": 1, "b": -1}
    verdicts = {"a": {0: "correct", 1: "incorrect"}, "b": {0: "correct", 1: "correct"}}
    s = score_verdicts("x", "policy", verdicts, {"a": 2, "b": 2}, labels)
    assert (s.f1, s.incorrect_precision, s.correct_precision, s.incorrect_recall, s.coverage) == (
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
    )


def test_correct_precision_with_and_without_outcome_implied_labels():
    # "b" reaches the right answer through a wrong step 1: its outcome-implied `correct` on step 1 is wrong
    labels = {"a": -1, "b": 1}
    verdicts = {"a": {0: "correct", 1: "correct"}, "b": {0: "correct", 1: "correct", 2: "correct"}}
    implied = frozenset({("a", 1), ("b", 1), ("b", 2)})  # b's step 2 is after the error: undetermined
    s = score_verdicts("x", "annotator", verdicts, {"a": 2, "b": 3}, labels, implied)
    assert (s.correct_labels, s.correct_precision) == (4, 0.75)
    assert s.outcome_implied_correct == 2
    assert s.correct_precision_direct == 1.0  # a's step 0 and b's step 0, both right
    assert score_verdicts("x", "annotator", verdicts, {"a": 2, "b": 3}, labels).correct_precision_direct == 0.75


def test_score_labels_counts_outcome_implied_labels_from_the_store(db):
    """mc_binary calls every step of a right-answer rollout correct; the human found step 1 wrong."""
    from rmforge.schemas.records import Step, StepLabel
    from rmforge.store import Store
    from rmforge.tasks.evaluate import score_labels

    def label(annotator, step, verdict, implied=False, model=None):
        return StepLabel(
            rollout_id="r",
            step_index=step,
            annotator=annotator,
            annotator_version="1",
            config_hash=annotator,
            model=model,
            verdict=verdict,
            outcome_implied=implied,
            run_id="t",
        )

    with Store(db) as store:
        store.write("steps", [Step(rollout_id="r", step_index=i, text=f"s{i}") for i in range(3)])
        store.write(
            "step_labels",
            [label("human", 0, "correct", model="ann"), label("human", 1, "incorrect", model="ann")]
            + [label("mc_binary", i, "correct", implied=True) for i in range(3)],
        )
    scores = score_labels.fn(db, ["r"], ["mc_binary"], ["ranked"], {})
    assert len(scores) == 1
    mc = scores[0]
    assert (mc["correct_labels"], mc["correct_precision"], mc["outcome_implied_correct"]) == (2, 0.5, 2)
    assert mc["correct_precision_direct"] is None  # no direct `correct` evidence at all
