"""Run bookkeeping (`tracked_run`) and progress reporting, as plain functions (no Prefect run)."""

import json

import pytest

from rmforge.flows.progress import Progress, set_progress_display
from rmforge.flows.runs import tracked_run
from rmforge.generators.base import generation_progress
from rmforge.generators.openai_server import OpenAIServerGenerator
from rmforge.generators.prompts import solution_request
from rmforge.schemas.config import GeneratorConfig, SamplingConfig
from rmforge.store import Store
from tests.servers import ChatServer


def run_rows(db):
    with Store(db, read_only=True) as store:
        return store.rows("SELECT flow, status, summary, finished_at FROM runs")


def test_a_completed_run_keeps_its_summary(db):
    with tracked_run(db, "curate", {"annotators": ["answer"]}) as run:
        run.summary = {"datasets": {"process_examples": 3}}
    [row] = run_rows(db)
    assert row["status"] == "completed" and row["finished_at"] is not None
    assert json.loads(row["summary"]) == {"datasets": {"process_examples": 3}}


def test_an_error_marks_the_run_failed_with_the_error(db):
    with pytest.raises(ValueError):
        with tracked_run(db, "annotate", {}) as run:
            run.summary["answer"] = {"rollouts": 2}
            raise ValueError("annotator exploded")
    [row] = run_rows(db)
    assert row["status"] == "failed"
    assert json.loads(row["summary"]) == {"answer": {"rollouts": 2}, "error": "ValueError: annotator exploded"}


def test_an_interrupt_marks_the_run_cancelled(db):
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(db, "generate", {}) as run:
            run.summary["new_rollouts"] = 5
            raise KeyboardInterrupt
    [row] = run_rows(db)
    assert row["status"] == "cancelled" and json.loads(row["summary"]) == {"new_rollouts": 5}


class RecordingDisplay:
    """Keeps every bar's description, total, unit, updates (done, counters) and whether it finished."""

    def __init__(self):
        self.bars = {}

    def start(self, key, description, total, unit):
        self.bars[key] = {"description": description, "total": total, "unit": unit, "updates": [], "finished": False}

    def update(self, key, done, counters):
        self.bars[key]["updates"].append((done, counters))

    def finish(self, key):
        self.bars[key]["finished"] = True

    def bar(self, description):
        return next(b for b in self.bars.values() if b["description"] == description)


@pytest.fixture()
def display():
    recording = RecordingDisplay()
    set_progress_display(recording)
    yield recording
    set_progress_display(None)


def test_generation_progress_arrives_per_request_from_the_openai_backend(display):
    server = ChatServer(lambda body, i: "The answer is \\boxed{1}")
    try:
        backend = OpenAIServerGenerator(GeneratorConfig(backend="openai", model="m", base_url=server.url))
        requests = [solution_request(f"What is {i} + 1?") for i in range(3)]
        with Progress("generating rollouts", 6) as progress, progress.track_generation(completions_are_items=True):
            backend.generate(requests, SamplingConfig(n=2))
        backend.close()
    finally:
        server.close()
    bar = display.bar("generating rollouts")
    assert (bar["total"], bar["unit"], bar["finished"]) == (6, "rollouts", True)
    assert [done for done, _ in bar["updates"]] == [2, 4, 6]  # one update per finished request
    assert bar["updates"][-1][1] == {"completions": 6, "tokens": 60}  # the server reports 10 tokens per choice


def test_progress_outside_a_tracking_block_is_not_reported(display):
    seen = []
    with generation_progress(lambda completions, tokens: seen.append(completions)):
        pass
    server = ChatServer(lambda body, i: "x")
    try:
        backend = OpenAIServerGenerator(GeneratorConfig(backend="openai", model="m", base_url=server.url))
        backend.generate([solution_request("q")], SamplingConfig(n=1))
        backend.close()
    finally:
        server.close()
    assert seen == []
