"""The `prm` annotator: thresholds to verdicts, scores and provenance on every label, against a real
loopback server answering vLLM's pooling API (the model boundary)."""

import pytest
from pydantic import ValidationError

from rmforge.annotators import build_annotator
from rmforge.annotators.base import AnnotationInput
from rmforge.annotators.prm import ProcessRewardAnnotator, verdict_for
from rmforge.schemas.records import Problem, Rollout
from tests.servers import PoolingServer
from tests.tiny_prm import SEPARATOR

# The server's model: a step scores 0.9 unless it holds the slip "= 11" (0.1), or "maybe" (0.5).
SCORES = {"= 11": 0.1, "maybe": 0.5}


def score(body):
    steps = body["messages"][-1]["content"].split(SEPARATOR)[:-1]
    if any("overflow" in step for step in steps):
        return 400, '{"message": "This model\'s maximum context length is 4096 tokens"}'
    probabilities = [next((p for key, p in SCORES.items() if key in step), 0.9) for step in steps]
    return [[1 - p, p] for p in probabilities]


@pytest.fixture()
def server():
    s = PoolingServer(score)
    yield s
    s.close()


def item(steps, rollout_id="r1"):
    problem = Problem(
        problem_id="p", source="test", question="Ava has 10 cards, gets 5, gives 4 away.", gold_answer="11"
    )
    rollout = Rollout(
        rollout_id=rollout_id,
        problem_id="p",
        model="policy",
        generator="openai",
        response="\n".join(steps),
        run_id="gen",
    )
    return AnnotationInput(problem=problem, rollout=rollout, steps=steps)


def prm(server, **options):
    scorer = {"backend": "openai", "model": "tiny-prm", "base_url": server.url, "max_retries": 0}
    return build_annotator("prm", {"scorer": scorer, **options})


@pytest.mark.parametrize(
    ("score_", "verdict"),
    [
        (0.9, "correct"),
        (0.7, "correct"),
        (0.69, "unknown"),
        (0.5, "unknown"),
        (0.31, "unknown"),
        (0.3, "incorrect"),
        (0.0, "incorrect"),
    ],
)
def test_thresholds_leave_an_unknown_band_between_them(score_, verdict):
    assert verdict_for(score_, 0.7, 0.3) == verdict


def test_equal_thresholds_decide_every_score_as_processbench_does():
    assert [verdict_for(s, 0.5, 0.5) for s in (0.49, 0.5, 0.51)] == ["incorrect", "correct", "correct"]


def test_thresholds_out_of_order_are_refused():
    with pytest.raises(ValidationError, match=r"incorrect_threshold 0\.8 is above correct_threshold 0\.6"):
        ProcessRewardAnnotator({"correct_threshold": 0.6, "incorrect_threshold": 0.8})


def test_without_a_model_the_annotator_says_so():
    reason = ProcessRewardAnnotator().availability()
    assert reason and "scorer" in reason and "model" in reason
    assert ProcessRewardAnnotator({"scorer": {"model": "Qwen/Qwen2.5-Math-PRM-7B"}}).availability() is None


def test_every_step_gets_its_score_a_verdict_and_provenance(server):
    annotator = prm(server)
    items = [
        item(["10 + 5 = 15", "15 - 4 = 11", "maybe 11"], "r1"),
        item(["10 + 5 = 15", "overflow"], "r2"),  # beyond the model's context
        item([], "r3"),  # nothing to score
    ]
    out = annotator.annotate(items, "run-1")
    labels = {(label.rollout_id, label.step_index): label for label in out.step_labels}
    assert set(labels) == {("r1", 0), ("r1", 1), ("r1", 2), ("r2", 0), ("r2", 1)}
    assert [labels["r1", i].verdict for i in range(3)] == ["correct", "incorrect", "unknown"]
    assert [labels["r1", i].score for i in range(3)] == pytest.approx([0.9, 0.1, 0.5])
    assert labels["r1", 1].reason == "PRM score 0.100 <= 0.3"
    assert labels["r1", 2].reason == "PRM score 0.500 between 0.3 and 0.7"
    assert all(labels["r2", i].verdict == "unknown" and labels["r2", i].score is None for i in range(2))
    assert "longer than tiny-prm's context" in labels["r2", 0].reason
    assert all(
        label.annotator == "prm" and label.model == "tiny-prm" and label.run_id == "run-1" for label in out.step_labels
    )
    assert not out.outcome_labels and not out.critiques
    assert len(server.payloads) == 2  # one request per solution with steps


def test_thresholds_are_part_of_the_labels_configuration(server):
    strict, lenient = prm(server), prm(server, correct_threshold=0.5, incorrect_threshold=0.5)
    assert strict.config_hash != lenient.config_hash
    out = lenient.annotate([item(["maybe so"])], "run-1")
    assert [label.verdict for label in out.step_labels] == ["correct"]
