"""`rmforge server start|status|stop`: a background Prefect server that later commands find."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent


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
