"""Monte Carlo annotators against a scripted completer.

The scripted model continues a prefix to the gold answer (7) unless the prefix
contains a step marked BAD, in which case every continuation ends at 9.
"""

import pytest

from annotators.mc import MonteCarloAnnotator
from annotators.mc_binary import BinarySearchMCAnnotator
from annotators.pav import ProgressAnnotator
from tests.builders import make_item
from generators.base import PROMPT_TOO_LONG
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


# ---------------------------------------------------------------- honest unknowns

def overflowing_completer(req, i):
    """Prefixes holding a LONG step do not fit the completer's context."""
    if "LONG" in req.assistant_prefix:
        return "", PROMPT_TOO_LONG
    return completer(req, i)


LONG_AFTER_1 = ["Step 1: 3 + 4 = 7", "Step 2: LONG text", "Step 3: more", "The answer is \\boxed{9}"]


def test_mc_prefix_that_overflows_the_context_is_unknown_not_a_failure():
    item = make_item(LONG_AFTER_1)
    labels = labels_of(MonteCarloAnnotator({"k": 2}, generator=ScriptedGenerator(overflowing_completer)).annotate([item], "run"), item)
    assert labels[0].verdict == "correct"
    assert [labels[i].verdict for i in (1, 2)] == ["unknown", "unknown"]
    assert "context" in labels[1].reason and labels[1].score is None
    assert labels[3].verdict == "incorrect"  # the rollout's own wrong answer


def test_mc_ungradable_continuations_are_left_out_of_the_estimate():
    def mixed(req, i):  # only the first continuation could be sampled and graded
        return ("The answer is \\boxed{7}", "stop") if i == 0 else ("", PROMPT_TOO_LONG)

    item = make_item(GOOD)
    labels = labels_of(MonteCarloAnnotator({"k": 4}, generator=ScriptedGenerator(mixed)).annotate([item], "run"), item)
    assert labels[0].score == 1.0  # 1 of 1 graded, not 1 of 4
    assert labels[0].reason.startswith("1/1 graded")


@pytest.mark.parametrize("annotator", [MonteCarloAnnotator, BinarySearchMCAnnotator, ProgressAnnotator])
def test_unknown_outcome_gives_unknown_labels(annotator):
    # A gold the checker cannot parse: every grade, the rollout's own included, is unknown.
    item = make_item(GOOD, gold_answer="\\frac{")
    out = annotator({"k": 2}, generator=ScriptedGenerator(completer)).annotate([item], "run")
    verdicts = {l.verdict for l in out.step_labels}
    assert verdicts == {"unknown"}, [(l.step_index, l.verdict, l.reason) for l in out.step_labels]
    assert all(l.reason for l in out.step_labels)


def test_binary_search_retry_samples_with_a_new_seed():
    gen = ScriptedGenerator(completer)
    BinarySearchMCAnnotator({"k": 4, "first_wave": 1, "seed": 5}, generator=gen).annotate([make_item(wrong_at(2))], "run")
    seeds = {(s.n, s.seed) for s in gen.samplings}
    assert (1, 5) in seeds and (3, 6) in seeds


def test_binary_search_stops_honestly_when_a_probe_cannot_be_graded():
    steps = ["Step 1: fine", "Step 2: fine", "Step 3: LONG", "Step 4: BAD", "Step 5: BAD", "The answer is \\boxed{9}"]
    item = make_item(steps)
    out = BinarySearchMCAnnotator({"k": 2}, generator=ScriptedGenerator(overflowing_completer)).annotate([item], "run")
    labels = labels_of(out, item)
    # probes: step 2 (LONG: ungradable) -> search stops; nothing before it was proven good
    assert {labels[i].verdict for i in labels} == {"unknown"}
    assert all("search stopped" in labels[i].reason for i in labels)
    assert max(labels) == 5  # up to the known-bad last step, nothing invented after it
