"""Monte Carlo annotators against a scripted completer.

The scripted model continues a prefix to the gold answer (7) unless the prefix
contains a step marked BAD, in which case every continuation ends at 9.
"""

import pytest

from rmforge.annotators.completions import NEVER_REACHED
from rmforge.annotators.mc import MonteCarloAnnotator
from rmforge.annotators.mc_binary import BinarySearchMCAnnotator
from rmforge.annotators.pav import ProgressAnnotator
from rmforge.generators.base import PROMPT_TOO_LONG
from tests.builders import make_item, make_rollout
from tests.fakes import RoundBasedEngine, ScriptedGenerator, SimulatedEngine


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
    return {lab.step_index: lab for lab in output.step_labels if lab.rollout_id == item.rollout.rollout_id}


def test_per_step_mc_soft_and_hard_labels():
    item = make_item(wrong_at(3, n=6), index=1)
    gen = ScriptedGenerator(half_completer)
    out = MonteCarloAnnotator({"k": 8}, generator=gen).annotate([item], "run")
    labels = labels_of(out, item)
    # 2/4 from the question: a good prefix fails 8 of 8 with probability E[(1-p)^8] = 0.035, p ~ Beta(3, 3)
    assert [labels[i].verdict for i in range(6)] == ["correct"] * 3 + ["incorrect"] * 3
    assert [labels[i].score for i in range(3)] == [0.5, 0.5, 0.5]
    assert "2/4" in labels[3].reason and "0.035" in labels[3].reason
    assert labels[5].score == 0.0 and "outcome" in labels[5].reason
    # the last prefix is the rollout itself: no sampling for it; one probe of the question (baseline_k=4)
    assert gen.samples == 8 * 5 + 4
    assert out.costs[0].completions == 44
    assert labels[0].annotator == "mc" and labels[0].model is not None


def test_mc_sends_one_batch_with_the_prefix_as_assistant_text():
    items = [make_item(GOOD, index=0), make_item(wrong_at(1, n=4), index=1)]
    gen = ScriptedGenerator(completer)
    MonteCarloAnnotator({"k": 2}, generator=gen).annotate(items, "run")
    prefixes = [r.assistant_prefix for r in gen.requests]
    assert len(prefixes) == 7 and [s.n for s in gen.samplings] == [2, 4]  # the prefixes, then one probe
    assert prefixes[-1] == ""  # the probe: the bare question
    assert prefixes[0] == "Step 1: 3 + 4 = 7\n"
    assert prefixes[1] == "Step 1: 3 + 4 = 7\nStep 2: so 7 apples\n"
    assert gen.requests[0].messages[-1].content == items[0].problem.question


def test_mc_without_gold_is_unknown_and_costs_nothing():
    item = make_item(GOOD, gold_answer=None)
    gen = ScriptedGenerator(completer)
    out = MonteCarloAnnotator({"k": 4}, generator=gen).annotate([item], "run")
    assert {lab.verdict for lab in out.step_labels} == {"unknown"}
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
    # ceil(log2(8)) rounds of at most k, plus one probe of the question (baseline_k) to test the refutation
    assert out.costs[0].completions == gen.samples <= 4 * 3 + 4


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
        first_per_step = min(
            lab.step_index
            for lab in per_step.step_labels
            if lab.rollout_id == item.rollout.rollout_id and lab.verdict == "incorrect"
        )
        first_binary = [
            lab.step_index
            for lab in binary.step_labels
            if lab.rollout_id == item.rollout.rollout_id and lab.verdict == "incorrect"
        ]
        assert first_binary == [first_per_step]
    assert per_step_gen.samples == 6 * 3 * 6 + 4  # k * (n - 1) per rollout, one probe for their one problem
    assert binary_gen.samples * 2 <= per_step_gen.samples


def test_binary_search_skips_correct_rollouts():
    gen = ScriptedGenerator(completer)
    item = make_item(GOOD)
    out = BinarySearchMCAnnotator({"k": 4}, generator=gen).annotate([item], "run")
    assert gen.samples == 0
    assert [lab.verdict for lab in out.step_labels] == ["correct"] * 4


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
    # empty prefix + 4 inner prefixes, then a probe: 2/2 from the question alone cannot show 0/2 is unlikely
    assert gen.samples == 2 * 5 + 4
    assert gen.requests[0].assistant_prefix == gen.requests[-1].assistant_prefix == ""


def test_progress_records_the_prover_model():
    from rmforge.schemas.config import GeneratorConfig

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
    labels = labels_of(
        MonteCarloAnnotator({"k": 2}, generator=ScriptedGenerator(overflowing_completer)).annotate([item], "run"), item
    )
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
    verdicts = {lab.verdict for lab in out.step_labels}
    assert verdicts == {"unknown"}, [(lab.step_index, lab.verdict, lab.reason) for lab in out.step_labels]
    assert all(lab.reason for lab in out.step_labels)


def test_binary_search_retry_samples_with_a_new_seed():
    gen = ScriptedGenerator(completer)
    BinarySearchMCAnnotator({"k": 4, "first_wave": 1, "seed": 5}, generator=gen).annotate(
        [make_item(wrong_at(2))], "run"
    )
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


# ---------------------------------------------------------------- statistical power of a refutation


def never_solves(req, i):
    return "The answer is \\boxed{9}"


def one_in_four(req, i):
    """A weak completer: a good prefix (or the bare question) reaches the answer in 1 of 4 samples."""
    return "The answer is \\boxed{9}" if "BAD" in req.assistant_prefix or i % 4 else "The answer is \\boxed{7}"


def with_siblings(item, answers, model="scripted"):
    """The item, with other rollouts of its problem by `model` ending in the given answers."""
    siblings = [
        make_rollout(item.problem, f"The answer is \\boxed{{{a}}}", index=100 + n).model_copy(update={"model": model})
        for n, a in enumerate(answers)
    ]
    return item.model_copy(update={"siblings": siblings})


@pytest.mark.parametrize("annotator", [MonteCarloAnnotator, BinarySearchMCAnnotator, ProgressAnnotator])
def test_a_problem_the_completer_never_solves_gets_no_incorrect_step(annotator):
    item = make_item(wrong_at(2, n=5))
    gen = ScriptedGenerator(never_solves)
    labels = labels_of(annotator({"k": 4}, generator=gen).annotate([item], "run"), item)
    # the last step states the wrong answer the rollout ends in: that is no sampling claim
    assert [labels[i].verdict for i in sorted(labels)][:-1] == ["unknown"] * (len(labels) - 1)
    if annotator is not ProgressAnnotator:  # pav: no prefix solvable, nothing to refute at all
        assert all(labels[i].reason.endswith(NEVER_REACHED) for i in sorted(labels)[:-1])
        assert "" in [r.assistant_prefix for r in gen.requests]  # the question was probed before giving up


@pytest.mark.parametrize("annotator", [MonteCarloAnnotator, BinarySearchMCAnnotator])
def test_a_success_by_the_completers_own_rollout_allows_a_significant_incorrect(annotator):
    item = make_item(wrong_at(0, n=4))
    options = {"k": 4, "baseline_k": 0}  # no probe: only the stored rollouts measure the completer
    alone = labels_of(annotator(options, generator=ScriptedGenerator(completer)).annotate([item], "run"), item)
    assert alone[0].verdict == "unknown" and alone[0].reason.endswith(NEVER_REACHED)
    other_model = with_siblings(item, ["7", "7", "7"], model="another-policy")
    other = labels_of(annotator(options, generator=ScriptedGenerator(completer)).annotate([other_model], "run"), item)
    assert other[0].verdict == "unknown"  # another model's success says nothing about this completer
    solved = with_siblings(item, ["7", "7", "7", "9"])
    labels = labels_of(annotator(options, generator=ScriptedGenerator(completer)).annotate([solved], "run"), item)
    assert labels[0].verdict == "incorrect" and labels[0].score == 0.0
    # 3/4 from the question: E[(1-p)^4] = 0.040 for p ~ Beta(4, 2) (a point estimate would say 0.25^4 = 0.004)
    assert "from the question in 3/4" in labels[0].reason and "0.040" in labels[0].reason


@pytest.mark.parametrize(("k", "verdict"), [(4, "unknown"), (16, "incorrect")])
def test_a_weak_completer_refutes_only_with_enough_samples(k, verdict):
    item = make_item(wrong_at(2, n=4))
    gen = ScriptedGenerator(one_in_four)
    labels = labels_of(MonteCarloAnnotator({"k": k, "baseline_k": 16}, generator=gen).annotate([item], "run"), item)
    assert [labels[i].verdict for i in (0, 1)] == ["correct", "correct"]
    # 4/16 from the question: 0/k on a good prefix has probability E[(1-p)^k], p ~ Beta(5, 13): 0.304 for
    # k=4, 0.026 for k=16
    assert labels[2].verdict == verdict and labels[2].score == 0.0
    assert "from the question in 4/16" in labels[2].reason
    assert ("too weak" in labels[2].reason) == (verdict == "unknown")


def test_weak_binary_search_leaves_the_steps_from_its_candidate_unknown():
    item = make_item(wrong_at(2, n=6))
    out = BinarySearchMCAnnotator({"k": 4, "first_wave": 4}, generator=ScriptedGenerator(one_in_four)).annotate(
        [item], "run"
    )
    labels = labels_of(out, item)
    assert [labels[i].verdict for i in range(6)] == ["correct", "correct"] + ["unknown"] * 4
    assert all("not evidence" in labels[i].reason for i in range(2, 6))


def test_no_probe_when_the_stored_rollouts_already_decide():
    item = with_siblings(make_item(wrong_at(1, n=4)), ["7"] * 8)
    gen = ScriptedGenerator(completer)
    labels = labels_of(MonteCarloAnnotator({"k": 4}, generator=gen).annotate([item], "run"), item)
    assert labels[1].verdict == "incorrect"
    assert "" not in [r.assistant_prefix for r in gen.requests]  # 8/8: even 4 failed probes keep 0/4 unlikely


def test_one_probe_per_problem_is_shared_by_its_rollouts():
    items = [make_item(wrong_at(1, n=4), index=i) for i in range(3)]
    gen = ScriptedGenerator(completer)
    out = MonteCarloAnnotator({"k": 2, "baseline_k": 4}, generator=gen).annotate(items, "run")
    assert [r.assistant_prefix for r in gen.requests].count("") == 1
    assert sum(c.completions for c in out.costs) == gen.samples == 3 * 3 * 2 + 4


# ---------------------------------------------------------------- labels that rest on the outcome


@pytest.mark.parametrize(
    ("annotator", "steps", "implied"),
    [
        (MonteCarloAnnotator, GOOD, [False, False, False, True]),
        (MonteCarloAnnotator, wrong_at(3, n=4), [False] * 4),
        (BinarySearchMCAnnotator, GOOD, [True] * 4),
        (BinarySearchMCAnnotator, wrong_at(1, n=4), [False] * 2),
        (ProgressAnnotator, GOOD, [False, False, False, True]),
        (ProgressAnnotator, wrong_at(2, n=4), [False] * 4),
    ],
)
def test_outcome_implied_marks_exactly_the_labels_taken_from_a_correct_outcome(annotator, steps, implied):
    item = make_item(steps)
    labels = labels_of(annotator({"k": 2}, generator=ScriptedGenerator(completer)).annotate([item], "run"), item)
    assert [labels[i].outcome_implied for i in sorted(labels)] == implied
    for i in sorted(labels):
        assert ("own outcome" in labels[i].reason) >= labels[i].outcome_implied
        assert labels[i].verdict == "correct" or not labels[i].outcome_implied


def test_a_few_lucky_measurements_do_not_make_a_failure_significant():
    from rmforge.annotators.completions import Estimate, chance_all_fail

    # One success in one try is no proof the completer always succeeds: 4 failures stay plausible.
    assert chance_all_fail(Estimate(1, 1, 1), 4) > 0.05
    assert chance_all_fail(Estimate(20, 20, 20), 4) < 0.001
    # More evidence for the same rate narrows the chance towards (1 - p)^k.
    assert chance_all_fail(Estimate(50, 100, 100), 4) < chance_all_fail(Estimate(2, 4, 4), 4)
    assert abs(chance_all_fail(Estimate(5000, 10000, 10000), 4) - 0.5**4) < 0.001


def test_mc_does_not_refute_a_prefix_that_a_later_prefix_continues_to_the_gold():
    # Prefix 1 fails its 4 samples by chance, prefix 2 reaches the gold: prefix 1 leads there too.
    item = make_item(["Step 1: a", "Step 2: b", "Step 3: c", "The answer is \\boxed{9}"])

    def completer(request, i: int) -> str:
        prefix = request.assistant_prefix
        return (
            "The answer is \\boxed{7}" if "Step 3" in prefix or "Step 2" not in prefix else "The answer is \\boxed{9}"
        )

    out = MonteCarloAnnotator({"k": 4}, generator=ScriptedGenerator(completer)).annotate([item], "run")
    labels = labels_of(out, item)
    assert [labels[i].verdict for i in range(4)] == ["correct", "unknown", "correct", "incorrect"]
    assert "a later prefix of this rollout does" in labels[1].reason


# ---------------------------------------------------------------- searches on a streaming engine

PENS = "Ann has 3 pens and buys 4 more. How many pens does she have?"


def uneven_steps(request):
    """Engine steps a request takes: uneven, so a streaming engine finishes requests out of round order."""
    return 1 + len(request.assistant_prefix) % 5


def search_batch():
    """Wrong rollouts of two problems at every error position, and a correct one (no search)."""
    items = [make_item(wrong_at(i, n=8), index=i) for i in range(7)]
    items += [make_item(wrong_at(i, n=6), question=PENS, index=i) for i in (0, 2, 4)]
    return [*items, make_item(GOOD, index=9)]


def label_rows(output):
    return sorted(
        (lab.rollout_id, lab.step_index, lab.verdict, lab.score, lab.reason, lab.outcome_implied)
        for lab in output.step_labels
    )


@pytest.mark.parametrize("respond", [completer, half_completer, one_in_four, never_solves])
@pytest.mark.parametrize("first_wave", [1, 4])
def test_pipelined_search_labels_and_costs_equal_the_round_based_ones(respond, first_wave):
    items, options = search_batch(), {"k": 4, "first_wave": first_wave}
    rounds = BinarySearchMCAnnotator(options, generator=ScriptedGenerator(respond)).annotate(items, "run")
    engine = SimulatedEngine(respond, slots=3, steps=uneven_steps)
    pipelined = BinarySearchMCAnnotator(options, generator=engine).annotate(items, "run")
    assert label_rows(pipelined) == label_rows(rounds)
    assert sorted((c.rollout_id, c.completions) for c in pipelined.costs) == sorted(
        (c.rollout_id, c.completions) for c in rounds.costs
    )


def test_each_search_advances_as_soon_as_its_own_probe_returns():
    items = search_batch()
    slow = [item for item in items if item.problem.question == PENS]

    def steps(request):  # the pens problem's requests take 50 engine steps, the others 1
        return 50 if request.messages[-1].content == PENS else 1

    engine = SimulatedEngine(completer, slots=16, steps=steps)
    out = BinarySearchMCAnnotator({"k": 4}, generator=engine).annotate(items, "run")
    first_slow = next(i for i, r in enumerate(engine.finished) if r.messages[-1].content == PENS)
    # every search of the fast problem, its empty-prefix probe included, ended before a slow probe returned
    fast_requests = [r for r in engine.finished if r.messages[-1].content != PENS]
    assert engine.finished[: len(fast_requests)] == fast_requests and first_slow == len(fast_requests)
    assert "" in [r.assistant_prefix for r in fast_requests]
    assert {labels_of(out, item)[max(labels_of(out, item))].verdict for item in slow} == {"incorrect"}


def test_a_streaming_engine_stays_fuller_than_rounds_of_the_same_search():
    items = [make_item(wrong_at(i % 7, n=8), index=i) for i in range(24)]

    def run(engine):
        BinarySearchMCAnnotator({"k": 4}, generator=engine).annotate(items, "run")
        return sum(engine.running) / (len(engine.running) * engine.slots), len(engine.running)

    (streamed_fill, streamed_steps), (round_fill, round_steps) = (
        run(SimulatedEngine(half_completer, slots=8, steps=uneven_steps)),
        run(RoundBasedEngine(half_completer, slots=8, steps=uneven_steps)),
    )
    assert streamed_steps < round_steps and streamed_fill > round_fill
    assert streamed_fill >= 0.8, (streamed_fill, round_fill)
