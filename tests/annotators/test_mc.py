"""Monte Carlo annotators against a scripted completer.

The scripted model continues a prefix to the gold answer (7) unless the prefix
contains a step marked BAD, in which case every continuation ends at 9.
"""

import pytest

from annotators.mc import MonteCarloAnnotator
from annotators.mc_binary import BinarySearchMCAnnotator
from annotators.pav import ProgressAnnotator
from tests.builders import make_item
from tests.fakes import ScriptedGenerator


def completer(req, i):
    return "The answer is \\boxed{9}" if "BAD" in req.assistant_prefix else "The answer is \\boxed{7}"


def half_completer(req, i):
    """Half the continuations of a good prefix reach the answer."""
    if "BAD" in req.assistant_prefix:
        return "The answer is \\boxed{9}"
    return "The answer is \\boxed{7}" if i % 2 == 0 else "The answer is \\boxed{8}"


GOOD = ["Step 1: 3 + 4 = 7", "Step 2: so 7 apples", "Step 3: check 7 - 4 = 3", "The answer is \\boxed{7}"]


def wrong_at(index, n=8):
    steps = [f"Step {i + 1}: fine {i}" for i in range(n - 1)] + ["The answer is \\boxed{9}"]
    for i in range(index, n - 1):
        steps[i] = f"Step {i + 1}: BAD {i}"
    return steps


def labels_of(output, item):
    return {l.step_index: l for l in output.step_labels if l.rollout_id == item.rollout.rollout_id}


def test_per_step_mc_soft_and_hard_labels():
    item = make_item(wrong_at(3, n=6), index=1)
    gen = ScriptedGenerator(half_completer)
    out = MonteCarloAnnotator({"k": 4}, generator=gen).annotate([item], "run")
    labels = labels_of(out, item)
    assert [labels[i].verdict for i in range(6)] == ["correct"] * 3 + ["incorrect"] * 3
    assert [labels[i].score for i in range(3)] == [0.5, 0.5, 0.5]
    assert labels[5].score == 0.0 and "outcome" in labels[5].reason
    # the last prefix is the rollout itself: no sampling for it
    assert gen.samples == 4 * 5
    assert out.costs[0].completions == 20
    assert labels[0].annotator == "mc" and labels[0].model is not None


def test_mc_sends_one_batch_with_the_prefix_as_assistant_text():
    items = [make_item(GOOD, index=0), make_item(wrong_at(1, n=4), index=1)]
    gen = ScriptedGenerator(completer)
    MonteCarloAnnotator({"k": 2}, generator=gen).annotate(items, "run")
    prefixes = [r.assistant_prefix for r in gen.requests]
    assert len(prefixes) == 6
    assert prefixes[0] == "Step 1: 3 + 4 = 7\n"
    assert prefixes[1] == "Step 1: 3 + 4 = 7\nStep 2: so 7 apples\n"
    assert gen.requests[0].messages[-1].content == items[0].problem.question


def test_mc_without_gold_is_unknown_and_costs_nothing():
    item = make_item(GOOD, gold_answer=None)
    gen = ScriptedGenerator(completer)
    out = MonteCarloAnnotator({"k": 4}, generator=gen).annotate([item], "run")
    assert {l.verdict for l in out.step_labels} == {"unknown"}
    assert gen.samples == 0


@pytest.mark.parametrize("error_index", [0, 1, 3, 5, 6])
def test_binary_search_finds_first_error_with_log_cost(error_index):
    item = make_item(wrong_at(error_index, n=8), index=error_index)
    gen = ScriptedGenerator(completer)
    out = BinarySearchMCAnnotator({"k": 4}, generator=gen).annotate([item], "run")
    labels = labels_of(out, item)
    assert sorted(labels) == list(range(error_index + 1))  # later steps unlabeled
    assert labels[error_index].verdict == "incorrect"
    assert all(labels[i].verdict == "correct" for i in range(error_index))
    assert out.costs[0].completions == gen.samples <= 4 * 3  # ceil(log2(8)) rounds of at most k


def test_binary_search_samples_the_rest_of_k_only_after_a_failed_first_wave():
    item = make_item(wrong_at(7, n=8))  # only the final answer is wrong: every probe is good
    gen = ScriptedGenerator(completer)
    BinarySearchMCAnnotator({"k": 4, "first_wave": 1}, generator=gen).annotate([item], "run")
    assert gen.samples == 3  # three good probes, one sample each
    gen = ScriptedGenerator(completer)
    BinarySearchMCAnnotator({"k": 4, "first_wave": 4}, generator=gen).annotate([item], "run")
    assert gen.samples == 12


def test_binary_search_agrees_with_per_step_estimation():
    items = [make_item(wrong_at(i, n=7), index=i) for i in range(6)]
    per_step_gen = ScriptedGenerator(completer)
    per_step = MonteCarloAnnotator({"k": 3}, generator=per_step_gen).annotate(items, "run")
    binary_gen = ScriptedGenerator(completer)
    binary = BinarySearchMCAnnotator({"k": 3}, generator=binary_gen).annotate(items, "run")
    for item in items:
        first_per_step = min(l.step_index for l in per_step.step_labels
                             if l.rollout_id == item.rollout.rollout_id and l.verdict == "incorrect")
        first_binary = [l.step_index for l in binary.step_labels
                        if l.rollout_id == item.rollout.rollout_id and l.verdict == "incorrect"]
        assert first_binary == [first_per_step]
    assert per_step_gen.samples == 6 * 3 * 6  # k * (n - 1) per rollout
    assert binary_gen.samples * 2 <= per_step_gen.samples


def test_binary_search_skips_correct_rollouts():
    gen = ScriptedGenerator(completer)
    item = make_item(GOOD)
    out = BinarySearchMCAnnotator({"k": 4}, generator=gen).annotate([item], "run")
    assert gen.samples == 0
    assert [l.verdict for l in out.step_labels] == ["correct"] * 4


def test_truncated_rollout_is_searched_as_wrong():
    gen = ScriptedGenerator(completer)
    item = make_item(GOOD, finish_reason="length")
    out = BinarySearchMCAnnotator({"k": 2}, generator=gen).annotate([item], "run")
    assert gen.samples > 0
    assert out.step_labels[-1].verdict == "incorrect"


def test_progress_advantages():
    item = make_item(wrong_at(2, n=5))
    gen = ScriptedGenerator(completer)
    out = ProgressAnnotator({"k": 2}, generator=gen).annotate([item], "run")
    labels = labels_of(out, item)
    assert [labels[i].score for i in range(5)] == [0.0, 0.0, -1.0, 0.0, 0.0]
    assert [labels[i].verdict for i in range(5)] == ["correct", "correct", "incorrect", "unknown", "unknown"]
    assert gen.samples == 2 * 5  # empty prefix + 4 inner prefixes
    assert gen.requests[0].assistant_prefix == ""


def test_progress_records_the_prover_model():
    from schemas.config import GeneratorConfig

    annotator = ProgressAnnotator({"prover": GeneratorConfig(backend="openai", model="big", base_url="http://x")})
    assert annotator.model == "big"
