"""Annotation tasks: done markers that know their input, one bad rollout costing only itself, and
errors that are not a rollout's own (an engine that does not start, a dead worker) labelling nothing."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta

import pytest

from rmforge.annotators.base import AnnotationInput, AnnotationOutput, Annotator, AnnotatorUnavailable, Evidence
from rmforge.annotators.judge import JudgeAnnotator
from rmforge.generators.base import BackendUnavailable, GenerationError
from rmforge.schemas.config import GeneratorConfig, StepSplitConfig
from rmforge.schemas.records import RunRecord, utc_now
from rmforge.store import Store
from rmforge.store.held import HeldStore
from rmforge.tasks import annotate as annotate_tasks
from rmforge.tasks.annotate import (
    CLAIM_AHEAD_BATCHES,
    InputReader,
    SharedBatchError,
    annotate_items,
    claim_batch,
    claimed_batches,
    garbage_collection_for_labelling,
    label_batch,
    load_inputs,
    make_annotator,
    pending_rollout_ids,
    release_claims,
    write_labels,
)
from rmforge.tasks.rollouts import import_rollouts
from rmforge.tasks.steps import split_rollout_steps
from tests.builders import make_item
from tests.fakes import ScriptedGenerator


def write_rollouts(path, n=6):
    rows = [
        {
            "problem_id": f"p{i}",
            "question": f"What is {i} + 3?",
            "gold_answer": str(i + 3),
            "response": f"Step 1: {i} + 3 = {i + 3 + (i % 2)}\nStep 2: The answer is \\boxed{{{i + 3 + (i % 2)}}}",
            "model": "m",
        }
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def annotate_one_batch(db: str, annotator: Annotator, rollout_ids: list[str], run_id: str) -> dict[str, int]:
    """One batch through the annotate flow's own steps (flows/annotate.py: `load_inputs`, the
    `label-batch` task, `write_labels`), without Prefect; the rows written of each kind."""
    with Store(db) as store:
        items = load_inputs(store, rollout_ids, annotator.reads_siblings)
        return write_labels(store, annotator, label_batch.fn(annotator, items, run_id))


def claim(
    db: str, annotator: Annotator, run_id: str, candidates: list[str], batch_size: int, batches_alone: int = 1
) -> list[str]:
    with Store(db) as store:
        return claim_batch(store, annotator, run_id, candidates, batch_size, batches_alone)


def annotate_all(db: str, annotator: Annotator) -> None:
    pending = pending_rollout_ids.fn(db, annotator)
    if pending:
        annotate_one_batch(db, annotator, pending, "run")


def test_done_marker_made_before_steps_existed_is_redone(tmp_path, db) -> None:
    # Rollouts stored without their steps (an import killed between the two writes, as an
    # earlier version could be; today both are one transaction), then annotate.
    source = tmp_path / "rollouts.jsonl"
    write_rollouts(source)
    import_rollouts.fn(db, str(source), "import")
    with Store(db) as store:
        store.execute("DELETE FROM steps")
    z3 = make_annotator("z3_arith", None, GeneratorConfig())
    annotate_all(db, z3)
    with Store(db) as store:
        assert store.rows("SELECT DISTINCT steps FROM annotator_costs") == [{"steps": 0}]
        assert store.count("step_labels") == 0
    assert pending_rollout_ids.fn(db, z3) == []

    # The rerun of the import adds the steps: every marker is now stale.
    assert split_rollout_steps.fn(db, StepSplitConfig()) == 12
    assert len(pending_rollout_ids.fn(db, z3)) == 6
    annotate_all(db, z3)
    assert pending_rollout_ids.fn(db, z3) == []
    with Store(db) as store:
        assert store.rows("SELECT DISTINCT steps FROM annotator_costs") == [{"steps": 2}]
        verdicts = store.rows("SELECT verdict, count(*) AS n FROM step_labels GROUP BY 1 ORDER BY 1")
    # Odd i: the claim i + 3 = i + 4 is refuted (3 rollouts, first step).
    assert {"verdict": "incorrect", "n": 3} in verdicts
    assert sum(row["n"] for row in verdicts) == 12


def test_marker_for_fewer_steps_drops_stale_labels(tmp_path, db) -> None:
    source = tmp_path / "rollouts.jsonl"
    write_rollouts(source, n=2)
    import_rollouts.fn(db, str(source), "import")
    split_rollout_steps.fn(db, StepSplitConfig())
    z3 = make_annotator("z3_arith", None, GeneratorConfig())
    annotate_all(db, z3)
    with Store(db) as store:
        store.execute("DELETE FROM steps WHERE step_index = 1")  # steps re-split into one
    annotate_all(db, z3)
    with Store(db) as store:
        assert store.rows("SELECT max(step_index) AS m FROM step_labels") == [{"m": 0}]


def start_runs(db: str, heartbeat_ago_s: dict[str, float]) -> None:
    """`running` runs that last beat that many seconds ago, beating every 30 s: a run whose last
    beat is over 90 s old reads as crashed."""
    with Store(db) as store:
        store.write(
            "runs",
            [
                RunRecord(
                    run_id=run_id,
                    flow="annotate",
                    config="{}",
                    status="running",
                    heartbeat_s=30.0,
                    heartbeat_at=utc_now() - timedelta(seconds=ago),
                )
                for run_id, ago in heartbeat_ago_s.items()
            ],
            on_conflict="replace",
        )


def claimants(db: str) -> dict[str, str]:
    with Store(db) as store:
        return dict(store.execute("SELECT rollout_id, run_id FROM batch_claims"))


def imported_for_runs(tmp_path, db, runs: dict[str, float]):
    """A store of rollouts, `runs` started (heartbeats that many seconds old), z3_arith and its pending list."""
    write_rollouts(tmp_path / "rollouts.jsonl")
    import_rollouts.fn(db, str(tmp_path / "rollouts.jsonl"), "import")
    start_runs(db, runs)
    z3 = make_annotator("z3_arith", None, GeneratorConfig())
    return z3, pending_rollout_ids.fn(db, z3)


def test_runs_claim_disjoint_batches_and_writing_a_batch_releases_its_claims(tmp_path, db) -> None:
    z3, pending = imported_for_runs(tmp_path, db, {"run-a": 0, "run-b": 0})

    first = claim(db, z3, "run-a", pending, 2)
    second = claim(db, z3, "run-b", pending, 2)
    assert first == pending[:2] and second == pending[2:4]

    annotate_one_batch(db, z3, first, "run-a")
    assert claimants(db) == {rollout_id: "run-b" for rollout_id in second}
    assert pending_rollout_ids.fn(db, z3) == pending[2:]
    # The rest of the list skips run-b's live claims.
    assert claim(db, z3, "run-a", pending, 10) == pending[4:]
    with Store(db) as store:
        assert release_claims(store, z3, "run-a") == 2
    assert claimants(db) == {rollout_id: "run-b" for rollout_id in second}


def test_the_claims_of_a_run_whose_heartbeat_stopped_are_taken_over(tmp_path, db) -> None:
    z3, pending = imported_for_runs(tmp_path, db, {"crashed": 600, "alive": 0})
    assert claim(db, z3, "crashed", pending, 3) == pending[:3]
    with Store(db) as store:  # a claim whose run never wrote a `runs` row is dead too
        store.execute(
            "INSERT INTO batch_claims (rollout_id, annotator, config_hash, run_id, batch_id, claimed_at) "
            "VALUES (?, ?, ?, 'never-started', 'b', now())",
            [pending[3], z3.name, z3.config_hash],
        )

    assert claim(db, z3, "alive", pending, 10) == pending
    assert claimants(db) == {rollout_id: "alive" for rollout_id in pending}


def test_the_claims_of_a_killed_process_on_this_machine_are_taken_over_at_once(tmp_path, db) -> None:
    # Its run still looks alive (the heartbeat is fresh), but its process is gone: a rerun right
    # after a SIGKILL must not leave the killed run's batch unlabelled.
    z3, pending = imported_for_runs(tmp_path, db, {"killed": 0, "alive": 0})
    assert claim(db, z3, "killed", pending, 3) == pending[:3]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Store(db) as store:  # as if a process that has exited since had made them
        store.execute(
            "UPDATE batch_claims SET pid = ?, process_started = '1' WHERE run_id = 'killed'", [int(gone.stdout)]
        )
    assert claim(db, z3, "alive", pending, 10) == pending
    assert claimants(db) == {rollout_id: "alive" for rollout_id in pending}


def test_live_claims_of_this_process_are_kept(tmp_path, db) -> None:
    z3, pending = imported_for_runs(tmp_path, db, {"first": 0, "second": 0})
    assert claim(db, z3, "first", pending, 3) == pending[:3]
    assert claim(db, z3, "second", pending, 10) == pending[3:]  # this process is alive


def test_a_run_alone_claims_several_batches_at_once_and_one_at_a_time_beside_another(tmp_path, db) -> None:
    z3, pending = imported_for_runs(tmp_path, db, {"run-a": 0, "run-b": 0})
    assert len(pending) == 6 and CLAIM_AHEAD_BATCHES == 4
    with HeldStore(db) as held:
        batches = claimed_batches(held, z3, "run-a", pending, 1)
        assert next(batches) == pending[:1]
        assert claimants(db) == {rollout_id: "run-a" for rollout_id in pending[:4]}  # one claim, four batches
        # run-b comes: it claims one batch past run-a's, and run-a, no longer alone, one at a time
        assert claim(db, z3, "run-b", pending, 1, batches_alone=CLAIM_AHEAD_BATCHES) == pending[4:5]
        assert list(batches) == [[rollout_id] for rollout_id in pending[1:4] + pending[5:]]
    assert claimants(db) == {**{rollout_id: "run-a" for rollout_id in pending[:4] + pending[5:]}, pending[4]: "run-b"}


def test_the_input_reader_reads_a_window_ahead_and_gives_each_batch_its_own_inputs(tmp_path, db, monkeypatch) -> None:
    rows = [
        {
            "problem_id": f"p{k % 3}",
            "question": f"What is {k % 3}?",
            "gold_answer": "1",
            "response": f"Step one {k}.\n\nStep two {k}.",
            "model": "m",
            "rollout_id": f"r{k:02d}",
        }
        for k in range(9)
    ]
    source = tmp_path / "rollouts.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    import_rollouts.fn(db, str(source), "import")
    split_rollout_steps.fn(db, StepSplitConfig())
    windows = []

    class CountedWindow(annotate_tasks.InputWindow):
        def __init__(self, store: Store, rollout_ids: list[str], with_siblings: bool) -> None:
            windows.append(rollout_ids)
            super().__init__(store, rollout_ids, with_siblings)

    monkeypatch.setattr(annotate_tasks, "InputWindow", CountedWindow)
    monkeypatch.setattr(annotate_tasks, "READ_WINDOW_ROLLOUTS", 4)
    candidates = [f"r{k:02d}" for k in range(9) if k != 4]  # r04 is another run's
    with HeldStore(db) as held:
        reader = InputReader(held, candidates, with_siblings=True)
        batches = [["r00", "r01"], ["r02", "r03"], ["r05", "r06"], ["r07", "r08"]]
        read = [reader.inputs(batch).items() for batch in batches]
    assert windows == [candidates[:4], candidates[4:8]]  # a window of 4 candidates serves two batches
    with Store(db) as store:
        for batch, items in zip(batches, read):
            expected = load_inputs(store, batch, with_siblings=True)
            assert [item.model_dump() for item in items] == [item.model_dump() for item in expected]
            assert all(len(item.steps) == 2 and len(item.siblings) == 2 for item in items)


def test_labelling_freezes_what_lives_collects_young_objects_less_often_and_puts_the_collector_back() -> None:
    threshold = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with garbage_collection_for_labelling():
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == (annotate_tasks.YOUNG_COLLECTION_THRESHOLD, 10, 10)
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*threshold)


class FailsOn(Annotator):
    """Labels every step correct, but raises on rollouts whose response holds `poison`."""

    name = "fails_on"
    evidence = Evidence(confirms_steps=True, labels_outcomes=True)

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        output = AnnotationOutput()
        for item in items:
            if "poison" in item.rollout.response:
                raise self.error
            output.step_labels += [self.step_label(item, i, "correct", run_id) for i in range(len(item.steps))]
            output.outcome_labels.append(self.outcome_label(item, "correct", run_id))
        return output


def test_one_failing_rollout_becomes_unknown_and_the_batch_goes_on() -> None:
    items = [make_item(["a", "b"], index=0), make_item(["poison", "x", "y"], index=1), make_item(["c"], index=2)]
    output = annotate_items(FailsOn(RecursionError("maximum recursion depth exceeded")), items, "run")
    by_rollout = {label.rollout_id: label for label in output.outcome_labels}
    assert [by_rollout[item.rollout.rollout_id].verdict for item in items] == ["correct", "unknown", "correct"]
    bad = items[1].rollout.rollout_id
    assert by_rollout[bad].reason == "annotator error: RecursionError: maximum recursion depth exceeded"
    bad_steps = [label for label in output.step_labels if label.rollout_id == bad]
    assert [(label.step_index, label.verdict) for label in bad_steps] == [
        (0, "unknown"),
        (1, "unknown"),
        (2, "unknown"),
    ]
    assert len(output.step_labels) == 6


def test_rollouts_that_fail_differently_or_alone_are_each_unknown_with_their_error() -> None:
    # Two of three rollouts fail the same way, but the third labels: the error is theirs.
    items = [make_item(["poison"], index=0), make_item(["poison"], index=1), make_item(["a"], index=2)]
    output = annotate_items(FailsOn(ValueError("bad claim")), items, "run")
    assert [label.verdict for label in output.outcome_labels] == ["unknown", "unknown", "correct"]
    # A batch of one cannot tell its error from the annotator's.
    alone = annotate_items(FailsOn(ValueError("bad claim")), items[:1], "run")
    assert [label.reason for label in alone.outcome_labels] == ["annotator error: ValueError: bad claim"]


@pytest.mark.parametrize(
    "error",
    [
        GenerationError("http://x: no answer after 3 tries"),
        BackendUnavailable("the vllm backend for m did not start: RuntimeError: Engine core initialization failed"),
        AnnotatorUnavailable("lean binary not found"),
        BrokenProcessPool("A process in the process pool was terminated abruptly"),
        MemoryError(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_an_error_that_is_not_the_rollouts_fails_the_batch_instead_of_labelling_unknown(error) -> None:
    items = [make_item(["a"], index=0), make_item(["poison"], index=1)]
    with pytest.raises(type(error)):
        annotate_items(FailsOn(error), items, "run")


def write_poisoned_rollouts(path, n=3):
    rows = [
        {
            "problem_id": f"p{i}",
            "question": f"What is {i} + 3?",
            "gold_answer": str(i + 3),
            "response": f"Step 1: poison {i}\nThe answer is \\boxed{{{i + 3}}}",
            "model": "m",
        }
        for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def stored_labels(db: str) -> dict[str, int]:
    with Store(db) as store:
        return {table: store.count(table) for table in ("step_labels", "outcome_labels", "annotator_costs")}


def test_the_same_error_on_every_rollout_of_a_batch_fails_it_and_writes_nothing(tmp_path, db) -> None:
    write_poisoned_rollouts(tmp_path / "rollouts.jsonl")
    import_rollouts.fn(db, str(tmp_path / "rollouts.jsonl"), "import")
    annotator = FailsOn(RuntimeError("Engine core initialization failed"))
    pending = pending_rollout_ids.fn(db, annotator)
    with pytest.raises(SharedBatchError, match=r"all 3 rollouts .* RuntimeError: Engine core initialization failed"):
        annotate_one_batch(db, annotator, pending, "run")
    assert stored_labels(db) == {"step_labels": 0, "outcome_labels": 0, "annotator_costs": 0}
    assert pending_rollout_ids.fn(db, annotator) == pending


def unstartable_vllm_engine(tmp_path, monkeypatch) -> GeneratorConfig:
    """A vLLM backend whose engine fails to start: its model is of an architecture vLLM does not
    know (without the vLLM extra installed, the start fails for that instead)."""
    monkeypatch.setenv("RMFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path / "cache" / "vllm"))
    model = tmp_path / "unknown-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"], "model_type": "llama"}))
    return GeneratorConfig(backend="vllm", model=str(model))


@pytest.mark.slow  # starts a vLLM engine
def test_an_engine_that_does_not_start_labels_nothing_and_a_rerun_labels_the_batch(tmp_path, db, monkeypatch) -> None:
    source = tmp_path / "rollouts.jsonl"
    write_rollouts(source, n=3)
    import_rollouts.fn(db, str(source), "import")
    split_rollout_steps.fn(db, StepSplitConfig())
    judge = make_annotator("judge", {"votes": 1}, unstartable_vllm_engine(tmp_path, monkeypatch))
    pending = pending_rollout_ids.fn(db, judge)
    with pytest.raises(BackendUnavailable, match="did not start"):
        annotate_one_batch(db, judge, pending, "run")
    assert stored_labels(db) == {"step_labels": 0, "outcome_labels": 0, "annotator_costs": 0}
    assert pending_rollout_ids.fn(db, judge) == pending and len(pending) == 3

    working = JudgeAnnotator({"votes": 1}, generator=ScriptedGenerator(lambda request, index: "VERDICT: -1"))
    assert working.config_hash == judge.config_hash
    annotate_one_batch(db, working, pending, "rerun")
    assert pending_rollout_ids.fn(db, judge) == []
    with Store(db) as store:
        assert store.rows("SELECT DISTINCT verdict FROM outcome_labels") == [{"verdict": "correct"}]


class DiesIn(Annotator):
    """Kills the worker process labelling it, as the kernel's OOM killer would."""

    name = "dies_in"
    evidence = Evidence(labels_outcomes=True)

    def annotate(self, items: Sequence[AnnotationInput], run_id: str) -> AnnotationOutput:
        os._exit(1)


@pytest.mark.slow  # spawns worker processes
def test_a_dead_worker_fails_its_batch_and_later_batches_get_fresh_workers() -> None:
    items = [make_item(["a"], index=0), make_item(["b"], index=1)]
    with pytest.raises(BrokenProcessPool):
        label_batch.fn(DiesIn(), items, "run", processes=1)
    output = label_batch.fn(FailsOn(ValueError("unused")), items, "run", processes=1)
    assert output.outcome_labels["verdict"].to_pylist() == ["correct", "correct"]


def test_siblings_are_the_other_rollouts_of_the_same_problem(tmp_path, db) -> None:
    rows = [
        {
            "problem_id": problem,
            "question": f"What is {problem}?",
            "gold_answer": "1",
            "response": f"The answer is {k}.",
            "model": "m",
            "rollout_id": f"{problem}-{k}",
        }
        for problem in ("a", "b")
        for k in range(3)
    ]
    source = tmp_path / "rollouts.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    import_rollouts.fn(db, str(source), "import")
    with Store(db) as store:
        plain = load_inputs(store, ["a-0", "b-2"])
        items = load_inputs(store, ["a-0", "b-2"], with_siblings=True)
    assert [item.siblings for item in plain] == [[], []]
    assert {item.rollout.rollout_id: [s.rollout_id for s in item.siblings] for item in items} == {
        "a-0": ["a-1", "a-2"],
        "b-2": ["b-0", "b-1"],
    }


def test_majority_labels_a_problem_without_gold_through_the_annotate_task(tmp_path, db) -> None:
    # Five rollouts of a problem with no gold (three agree), one of a problem with a gold.
    answers = ["42", "42", r"\frac{84}{2}", "41", None]
    rows = [
        {
            "problem_id": "open",
            "question": "What is 6 * 7?",
            "response": f"6 * 7 = 42\nThe answer is \\boxed{{{a}}}" if a else "I am not sure.",
            "model": "m",
            "rollout_id": f"open-{k}",
        }
        for k, a in enumerate(answers)
    ] + [
        {
            "problem_id": "graded",
            "question": "What is 1 + 1?",
            "gold_answer": "2",
            "response": "The answer is \\boxed{2}",
            "model": "m",
            "rollout_id": "graded-0",
        }
    ]
    source = tmp_path / "rollouts.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    import_rollouts.fn(db, str(source), "import")
    majority = make_annotator("majority", {"min_samples": 4}, GeneratorConfig())
    annotate_all(db, majority)
    with Store(db) as store:
        labels = {
            row["rollout_id"]: (row["verdict"], row["score"], row["reason"])
            for row in store.rows(
                "SELECT rollout_id, verdict, score, reason FROM outcome_labels WHERE annotator = 'majority'"
            )
        }
    assert labels == {
        "open-0": ("correct", 0.6, "3 of 5 rollouts answer 42"),
        "open-1": ("correct", 0.6, "3 of 5 rollouts answer 42"),
        "open-2": ("correct", 0.6, "3 of 5 rollouts answer 42"),
        "open-3": ("incorrect", 0.2, "answers 41; 3 of 5 rollouts answer 42"),
        "open-4": ("unknown", None, "no final answer: no vote cast"),
        "graded-0": ("unknown", None, "gold answer present: the `answer` verifier decides"),
    }
    assert pending_rollout_ids.fn(db, majority) == []
