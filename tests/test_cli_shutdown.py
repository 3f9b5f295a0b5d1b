"""SIGTERM during generation: the command stops its children (the temporary Prefect
server, the engine), marks its runs cancelled and exits, leaving nothing behind.

Runs `rmforge run` as a real process against a loopback OpenAI-compatible server
that answers slowly, so generation is guaranteed to be in progress when the signal
arrives (no vLLM needed).
"""

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from rmforge.store import Store
from tests.servers import ChatServer

pytestmark = pytest.mark.slow  # CLI subprocesses killed mid-run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def slow_server():
    request_arrived, release = threading.Event(), threading.Event()

    def respond(body, index):
        request_arrived.set()
        release.wait(120)  # a model that takes its time
        return "Step 1: 1 + 1 = 2\nThe answer is \\boxed{2}"

    server = ChatServer(respond)
    server.request_arrived = request_arrived
    yield server
    release.set()
    server.close()


def command_line(process):
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # short-lived helpers come and go
        return ""


def is_engine(process):
    return "EngineCore" in command_line(process)


def terminate_during_generation(command, tmp_path, generating, settle_s=0.0, sig=signal.SIGTERM):
    """Start `rmforge ...`, send `sig` (to it alone) once `generating()` holds; returns (exit
    code, stderr, its child processes just before the signal with their command lines, and whether the engine was among them)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RMFORGE_STATE_DIR": str(tmp_path / "state")}
    env.pop("PREFECT_API_URL", None)  # the command starts (and must stop) its own temporary server
    process = subprocess.Popen(
        [sys.executable, "-m", "rmforge.cli", *command],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        while not generating(process):
            assert process.poll() is None, process.communicate()
            time.sleep(1)
        time.sleep(settle_s)
        children = {p: command_line(p) for p in psutil.Process(process.pid).children(recursive=True)}
        engine_running = any("EngineCore" in line for line in children.values())
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, err.decode(), children, engine_running


def served_run(server, db, size):
    """`rmforge run` of `size` problems x `size` samples from the served model, labelled by `answer`."""
    return [
        "run",
        "--backend",
        "openai",
        "--base-url",
        server.url,
        "--model",
        "served",
        "--problems",
        str(size),
        "--samples",
        str(size),
        "--annotators",
        "answer",
        "--db",
        str(db),
    ]


def assert_stopped_cleanly(code, err, children, db):
    """Exit 143 with one line, no child left, the pipeline and the stage it was in marked
    cancelled (stages that finished before the signal stay completed); returns the runs."""
    assert code == 128 + signal.SIGTERM, err
    assert "cancelled by SIGTERM" in err and "Traceback" not in err
    assert "Crash detected" not in err  # a stop the user asked for is no crash
    assert children, "the temporary Prefect server should have been a child process"
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    with Store(db, read_only=True) as store:
        runs = {r["flow"]: r["status"] for r in store.rows("SELECT flow, status FROM runs ORDER BY started_at")}
    assert runs["pipeline"] == "cancelled"
    stages = [status for flow, status in runs.items() if flow != "pipeline"]
    assert stages[-1:] == ["cancelled"] and set(stages[:-1]) <= {"completed"}, runs
    return runs


def test_sigterm_during_generation_cancels_the_run_and_leaves_no_process(slow_server, tmp_path):
    db = tmp_path / "store.duckdb"
    command = served_run(slow_server, db, size=2)
    # generation has started once the model is asked
    code, err, children, _ = terminate_during_generation(
        command, tmp_path, lambda _: slow_server.request_arrived.is_set()
    )
    assert assert_stopped_cleanly(code, err, children, db) == {"pipeline": "cancelled", "generate": "cancelled"}
    with Store(db, read_only=True) as store:
        assert store.count("rollouts") == 0  # the interrupted batch wrote nothing half-way
        assert store.count("problems") == 2  # what was stored before the signal stays


def test_sigkill_takes_the_temporary_prefect_server_with_it(slow_server, tmp_path):
    """No handler runs on SIGKILL: the server must have been bound to the command's life."""
    command = served_run(slow_server, tmp_path / "store.duckdb", size=1)
    code, _, children, _ = terminate_during_generation(
        command, tmp_path, lambda _: slow_server.request_arrived.is_set(), sig=signal.SIGKILL
    )
    assert code == -signal.SIGKILL
    # Prefect's app behind rmforge's guard (rmforge.server), as the temporary server runs it
    servers = [p for p, line in children.items() if "create_guarded_prefect_app" in line]
    assert servers, children
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert not alive, "the temporary Prefect server outlived the killed command"


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (cpu/gpu extra)")
def test_sigterm_stops_the_vllm_engine_processes(tmp_path):
    db = tmp_path / "store.duckdb"
    command = ["run", "--problems", "2", "--samples", "4", "--annotators", "answer", "--db", str(db)]

    def engine_started(process):
        return any(is_engine(p) for p in psutil.Process(process.pid).children(recursive=True))

    # The engine lives until the command ends, so on a fast machine the signal may land in a
    # later stage: what matters is that the engine processes go with the command.
    code, err, children, engine_running = terminate_during_generation(command, tmp_path, engine_started, settle_s=5)
    assert engine_running
    assert_stopped_cleanly(code, err, children, db)
