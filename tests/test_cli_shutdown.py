"""SIGTERM during generation: the command stops its children (the temporary Prefect
server, the engine), marks its runs cancelled and exits, leaving nothing behind.

Runs `rmforge run` as a real process against a loopback OpenAI-compatible server
that answers slowly, so generation is guaranteed to be in progress when the signal
arrives (no vLLM needed).
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from tasks.store import Store
from tests.servers import ChatServer

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


def test_sigterm_during_generation_cancels_the_run_and_leaves_no_process(slow_server, tmp_path):
    db = tmp_path / "store.duckdb"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RMFORGE_STATE_DIR": str(tmp_path / "state")}
    env.pop("PREFECT_API_URL", None)  # the command starts (and must stop) its own temporary server
    command = [sys.executable, "-m", "rmforge.cli", "run", "--backend", "openai", "--base-url", slow_server.url,
               "--model", "served", "--problems", "2", "--samples", "2", "--annotators", "answer", "--db", str(db)]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        while not slow_server.request_arrived.wait(1):  # generation has started once the model is asked
            assert process.poll() is None, process.communicate()
        children = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, err.decode()
    assert "cancelled by SIGTERM" in err.decode() and "Traceback" not in err.decode()
    assert children, "the temporary Prefect server should have been a child process"
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]

    with Store(db, read_only=True) as store:
        runs = {r["flow"]: r["status"] for r in store.rows("SELECT flow, status FROM runs")}
        assert runs == {"pipeline": "cancelled", "generate": "cancelled"}
        assert store.count("rollouts") == 0  # the interrupted batch wrote nothing half-way
        assert store.count("problems") == 2  # what was stored before the signal stays
