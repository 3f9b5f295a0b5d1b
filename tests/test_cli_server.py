"""`rmforge server start|status|stop`: a background Prefect server that later commands find."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from schemas.config import StepSplitConfig
from tasks.rollouts import import_rollouts
from tasks.steps import split_rollout_steps
from tasks.store import Store
from tests.servers import ChatServer

REPO = Path(__file__).resolve().parent.parent
# Seconds a command may take to give up once its Prefect server is gone (Prefect's default
# client retries alone waited over two minutes).
LOST_SERVER_BOUND_S = 30


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_lifecycle_and_commands_use_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RMFORGE_STATE_DIR": str(tmp_path / "state"),
           "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)

    def rmforge(*args):
        return subprocess.run([sys.executable, "-m", "rmforge.cli", *map(str, args)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    port = free_port()
    started = rmforge("server", "start", "--port", port)
    assert started.returncode == 0, started.stderr
    assert f"http://127.0.0.1:{port}" in started.stdout
    state = json.loads((tmp_path / "state" / "rmforge-server.json").read_text())
    try:
        assert "answering" in rmforge("server", "status").stdout
        assert f"pid {state['pid']}" in rmforge("server", "start").stdout  # the running one, not a second server

        rows = tmp_path / "r.jsonl"
        rows.write_text(json.dumps({"problem_id": "p", "question": "1 + 1?", "gold_answer": "2",
                                    "response": "1 + 1 = 2. The answer is 2."}) + "\n")
        imported = rmforge("import", "rollouts", rows, "--db", tmp_path / "s.duckdb")
        assert imported.returncode == 0, imported.stderr
        flows = httpx.post(f"{state['api_url']}/flows/filter", json={}, timeout=10).json()
        assert "import-rollouts" in {f["name"] for f in flows}  # the command ran against this server
    finally:
        stopped = rmforge("server", "stop")
    assert stopped.returncode == 0 and f"pid {state['pid']}" in stopped.stdout
    deadline = time.monotonic() + 30
    while psutil.pid_exists(state["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(state["pid"])
    after = rmforge("server", "status")
    assert after.returncode == 1 and "No background Prefect server" in after.stdout


def test_a_server_lost_mid_run_fails_fast_with_one_line(tmp_path):
    """The background server is killed while `annotate` waits for the model: the command
    stops within LOST_SERVER_BOUND_S with one line naming the server, the run is `failed`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RMFORGE_STATE_DIR": str(tmp_path / "state"),
           "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    db = str(tmp_path / "s.duckdb")
    rows = tmp_path / "r.jsonl"
    rows.write_text(json.dumps({"problem_id": "p", "question": "What is 2 + 3 + 4?", "gold_answer": "9",
                                "response": "2 + 3 = 5.\n\n5 + 4 = 10.\n\nThe answer is 10."}) + "\n")
    import_rollouts.fn(db, str(rows), "import")
    split_rollout_steps.fn(db, StepSplitConfig())
    asked, answer = threading.Event(), threading.Event()

    def respond(body, index):
        asked.set()
        answer.wait(60)  # the model is still thinking when the server dies
        return "The answer is 9."

    model = ChatServer(respond)
    config = tmp_path / "served.yaml"
    config.write_text(f"generator:\n  backend: openai\n  model: served\n  base_url: {model.url}\n")
    started = subprocess.run([sys.executable, "-m", "rmforge.cli", "server", "start", "--port", str(free_port())],
                             env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    state = json.loads((tmp_path / "state" / "rmforge-server.json").read_text())
    command = subprocess.Popen([sys.executable, "-m", "rmforge.cli", "annotate", "--annotator", "mc", "--config",
                                str(config), "--db", db], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert asked.wait(120), command.communicate()
        os.killpg(state["pid"], signal.SIGKILL)
        killed = time.monotonic()
        answer.set()
        _, err = command.communicate(timeout=300)
        waited = time.monotonic() - killed
    finally:
        answer.set()
        model.close()
        if command.poll() is None:
            command.kill()
            command.wait()
        subprocess.run([sys.executable, "-m", "rmforge.cli", "server", "stop"], env=env, timeout=60)
    assert command.returncode == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and state["api_url"] in lines[0], lines
    assert "store is consistent" in lines[0] and "rerun" in lines[0], lines
    assert waited < LOST_SERVER_BOUND_S, (waited, lines)
    with Store(db, read_only=True) as store:
        assert [r["status"] for r in store.rows("SELECT status FROM runs WHERE flow = 'annotate'")] == ["failed"]
