"""SIGKILL of a command, which no handler of it sees, still takes every process it started
with it: label workers, the vLLM engine and its workers, multiprocessing's resource tracker.

Each test starts `rmforge ...` as a real process in a session of its own, records every
process descended from it once the children of interest run, SIGKILLs the command alone
and checks that none of the recorded processes outlives it.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rmforge.orphans import MARKER_VARIABLE, marked_processes
from rmforge.schemas.config import StepSplitConfig
from rmforge.tasks.rollouts import import_rollouts
from rmforge.tasks.steps import split_rollout_steps
from tests.test_cli_shutdown import command_line

pytestmark = pytest.mark.slow  # killed CLI subprocesses

REPO = Path(__file__).resolve().parent.parent
ORPHAN_DEADLINE_S = 10


def descendants(pid):
    return {p: command_line(p) for p in psutil.Process(pid).children(recursive=True)}


def still_running(processes):
    """The recorded processes alive now; a zombie waiting to be reaped is dead."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def sigkill_when(arguments, tmp_path, ready, timeout_s=240):
    """Start `python ARGUMENTS`, SIGKILL it (it alone) once `ready(its descendants)` holds;
    return the descendants recorded just before the kill."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RMFORGE_STATE_DIR": str(tmp_path / "state")}
    env.pop("PREFECT_API_URL", None)
    process = subprocess.Popen(
        [sys.executable, *arguments],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    recorded = {}
    try:
        deadline = time.monotonic() + timeout_s
        while not ready(recorded := descendants(process.pid)):
            assert process.poll() is None, process.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, recorded
            time.sleep(0.2)
        process.kill()
        process.wait()
        deadline = time.monotonic() + ORPHAN_DEADLINE_S
        while still_running(recorded) and time.monotonic() < deadline:
            time.sleep(0.2)
        return recorded
    finally:
        # Only what this test started, should an assertion above have left it running.
        for leftover in still_running(recorded):
            leftover.kill()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def assert_none_outlived(recorded):
    alive = still_running(recorded)
    assert not alive, [recorded[p] for p in alive]


def write_arithmetic_rollouts(path, n_problems):
    """Three rollouts per problem, three arithmetic steps each (z3_arith checks every step)."""
    rows = []
    for p in range(n_problems):
        a, b = p + 2, p + 5
        question = f"Sam has {a} pens and buys {b} more. How many pens?"
        for k in range(3):
            total = a + b + k
            steps = f"Step 1: {a} + {b} = {total}\nStep 2: {total} * 2 = {2 * total}\nStep 3: {2 * total} / 2 = {total}"
            rows.append(
                {
                    "problem_id": f"pens-{p}",
                    "question": question,
                    "gold_answer": str(a + b),
                    "response": f"{steps}\nThe answer is \\boxed{{{total}}}",
                    "model": f"m{k}",
                }
            )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_sigkill_during_annotation_takes_the_label_workers_and_resource_tracker(tmp_path):
    db = str(tmp_path / "store.duckdb")
    source = tmp_path / "rollouts.jsonl"
    write_arithmetic_rollouts(source, n_problems=1000)
    import_rollouts.fn(db, str(source), "import")
    split_rollout_steps.fn(db, StepSplitConfig())

    def labelling(processes):  # both label workers started (the tracker starts before them)
        lines = processes.values()
        return sum("spawn_main" in line for line in lines) >= 2 and any("resource_tracker" in line for line in lines)

    command = ["annotate", "--annotator", "z3_arith", "--workers", "2", "--batch-size", "50", "--db", db]
    recorded = sigkill_when(["-m", "rmforge.cli", *command], tmp_path, labelling)
    assert_none_outlived(recorded)


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (cpu/gpu extra)")
def test_sigkill_during_generation_takes_the_vllm_engine_processes(tmp_path):
    command = [
        "run",
        "--problems",
        "1",
        "--samples",
        "1",
        "--annotators",
        "answer",
        "--db",
        str(tmp_path / "store.duckdb"),
    ]

    def engine_workers_started(processes):  # EngineCore starts VLLM::Worker, its child
        return any("EngineCore" in line for line in processes.values()) and any(
            "VLLM::Worker" in command_line(p) or "VLLM::Worker" in p.name() for p in processes
        )

    recorded = sigkill_when(["-m", "rmforge.cli", *command], tmp_path, engine_workers_started)
    assert_none_outlived(recorded)


# A command that binds its children, then starts a grandchild (through a child) that gives
# itself a title longer than its command line, as vLLM's engine processes do.
RETITLING_COMMAND = """
import multiprocessing, subprocess, sys, time
from rmforge.orphans import bind_children_to_this_process

def retitle_and_wait():
    import setproctitle
    setproctitle.setproctitle("RETITLED::" + "x" * 300)
    time.sleep(120)

if __name__ == "__main__":
    bind_children_to_this_process()
    child = multiprocessing.get_context("spawn").Process(target=retitle_and_wait)
    child.start()
    time.sleep(120)
"""


@pytest.mark.skipif(importlib.util.find_spec("setproctitle") is None, reason="setproctitle is not installed")
def test_sigkill_takes_a_retitled_process_with_it(tmp_path):
    script = tmp_path / "command.py"
    script.write_text(RETITLING_COMMAND)

    def retitled(processes):
        return any(line.startswith("RETITLED::") for line in processes.values())

    recorded = sigkill_when([str(script)], tmp_path, retitled, timeout_s=60)
    assert_none_outlived(recorded)


def test_marked_processes_are_the_ones_carrying_the_marker():
    marker = "test-marker-" + str(os.getpid())
    env = {**os.environ, MARKER_VARIABLE: marker}
    marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    unmarked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while marked.pid not in marked_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marked_processes(marker) == [marked.pid]
        assert unmarked.pid not in marked_processes(marker)
    finally:
        marked.kill(), unmarked.kill()
        marked.wait(), unmarked.wait()
