"""The `majority` annotator: self-consistency outcome labels from a problem's rollouts."""

from __future__ import annotations

import pytest

from rmforge.annotators import REGISTRY, build_annotator
from rmforge.annotators.base import AnnotationInput
from rmforge.annotators.majority import GOLD_PRESENT, MajorityAnnotator
from tests.builders import make_problem, make_rollout


def vote_items(
    responses: list[str], *, gold_answer: str | None = None, truncated: frozenset[int] = frozenset(), domain="math"
) -> list[AnnotationInput]:
    """One item per response, each carrying the problem's other rollouts as siblings."""
    problem = make_problem(gold_answer=gold_answer, domain=domain)
    rollouts = [
        make_rollout(problem, response, index=i, finish_reason="length" if i in truncated else "stop")
        for i, response in enumerate(responses)
    ]
    return [
        AnnotationInput(
            problem=problem,
            rollout=rollout,
            steps=[rollout.response],
            siblings=[other for other in rollouts if other.rollout_id != rollout.rollout_id],
        )
        for rollout in rollouts
    ]


def label(responses: list[str], config: dict | None = None, **options) -> list[tuple[str, float | None, str]]:
    labels = MajorityAnnotator(config).annotate(vote_items(responses, **options), run_id="run-1").outcome_labels
    return [(lab.verdict, lab.score, lab.reason) for lab in labels]


def boxed(answer: str) -> str:
    return f"Working...\nThe answer is \\boxed{{{answer}}}."


def test_majority_answer_is_correct_and_the_others_incorrect() -> None:
    labels = label([boxed("42"), boxed("42"), boxed("41"), boxed("42"), boxed("7")])
    assert labels == [
        ("correct", 0.6, "3 of 5 rollouts answer 42"),
        ("correct", 0.6, "3 of 5 rollouts answer 42"),
        ("incorrect", 0.2, "answers 41; 3 of 5 rollouts answer 42"),
        ("correct", 0.6, "3 of 5 rollouts answer 42"),
        ("incorrect", 0.2, "answers 7; 3 of 5 rollouts answer 42"),
    ]


def test_equivalent_forms_are_one_answer() -> None:
    labels = label([boxed("1/2"), boxed("0.5"), boxed(r"\frac{1}{2}"), boxed(r"\dfrac{2}{4}"), boxed("2")])
    assert [verdict for verdict, _, _ in labels] == ["correct"] * 4 + ["incorrect"]
    assert labels[0][1] == 0.8
    assert labels[4][2].startswith("answers 2; 4 of 5 rollouts answer ")  # under one of its forms


def test_tie_is_no_majority() -> None:
    labels = label([boxed("42"), boxed("41"), boxed("42"), boxed("41")])
    assert {verdict for verdict, _, _ in labels} == {"unknown"}
    assert labels[0][2] == (
        "no answer reached by more than 50% of rollouts: 2 of 4 rollouts answer 42; 2 of 4 rollouts answer 41"
    )


@pytest.mark.parametrize(
    ("min_share", "verdicts"), [(0.5, ["correct"] * 3 + ["incorrect"] * 2), (0.6, ["unknown"] * 5)]
)
def test_share_must_exceed_min_share(min_share: float, verdicts: list[str]) -> None:
    labels = label([boxed("42")] * 3 + [boxed("41"), boxed("40")], {"min_share": min_share})
    assert [verdict for verdict, _, _ in labels] == verdicts


def test_below_min_share_cannot_be_configured() -> None:
    # A plurality below half could be outvoted by answers the checker failed to compare.
    with pytest.raises(ValueError):
        MajorityAnnotator({"min_share": 0.3})


def test_too_few_rollouts_is_unknown() -> None:
    labels = label([boxed("42")] * 3)
    assert labels == [("unknown", None, "3 rollouts of this problem; a vote needs 4")] * 3
    assert [verdict for verdict, _, _ in label([boxed("42")] * 3, {"min_samples": 3})] == ["correct"] * 3


def test_gold_present_abstains() -> None:
    labels = label([boxed("42")] * 5, gold_answer="42")
    assert labels == [("unknown", None, GOLD_PRESENT)] * 5


def test_rollouts_without_an_answer_cast_no_vote_but_count_in_the_share() -> None:
    responses = [boxed("42"), boxed("42"), boxed("42"), "I could not finish.", boxed("42") + " and more"]
    labels = label(responses, truncated=frozenset({4}))
    assert labels[3] == ("unknown", None, "no final answer: no vote cast")
    assert labels[4] == ("unknown", None, "truncated: no vote cast")
    assert labels[0] == ("correct", 0.6, "3 of 5 rollouts answer 42")
    # Two of five answer, all alike: not a majority of the problem's rollouts.
    few = label([boxed("42"), boxed("42"), "no idea", "still no idea", "none"])
    assert few[0][0] == "unknown"


def test_answer_the_checker_cannot_compare_is_not_called_wrong() -> None:
    labels = label([boxed("42")] * 3 + [boxed("???"), boxed("41")])
    assert labels[3] == (
        "unknown",
        None,
        "cannot tell whether ??? equals the majority answer (3 of 5 rollouts answer 42)",
    )
    assert labels[4][0] == "incorrect"


def test_logic_answers_vote_by_their_label() -> None:
    responses = ["Answer: True", "Answer: true, since all cats are mammals.", r"\boxed{\text{True}}", "Answer: False"]
    labels = label(responses, domain="logic")
    assert [verdict for verdict, _, _ in labels] == ["correct"] * 3 + ["incorrect"]


def test_registered_and_declared_as_model_outcome_votes() -> None:
    assert REGISTRY["majority"] == "rmforge.annotators.majority:MajorityAnnotator"
    annotator = build_annotator("majority")
    assert annotator.reads_siblings
    assert annotator.evidence.labels_outcomes and annotator.evidence.authority == "model"
    assert annotator.evidence.score == "vote_share"
    assert not (annotator.evidence.confirms_steps or annotator.evidence.refutes_steps)
