"""The Prefect server flow commands share: the first command starts it in the background, later
commands use it, it stops itself once unused (never during a run), and --no-shared-server keeps
a command on a temporary server of its own."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import psutil
import pytest

from rmforge.errors import UserError
from rmforge.server import idle_stop_seconds

REPO = Path(__file__).resolve().parent.parent
STARTED = "Started a Prefect server at"


def shared_server_env(tmp_path: Path, idle_s: float) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RMFORGE_STATE_DIR": str(tmp_path / "state"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "RMFORGE_SERVER_IDLE_S": str(idle_s),
    }
    for name in ("PREFECT_API_URL", "RMFORGE_SHARED_SERVER"):  # the tests' own settings (conftest)
        env.pop(name, None)
    return env


def write_rollouts(path: Path) -> Path:
    row = {"problem_id": "p", "question": "1 + 1?", "gold_answer": "2", "response": "1 + 1 = 2. The answer is 2."}
    path.write_text(json.dumps(row) + "\n")
    return path


def rmforge(env: dict[str, str], cwd: Path, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rmforge.cli", *map(str, args)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def state_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "state" / "rmforge-server.json").read_text())


def wait_for_exit(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.slow
def test_the_first_commands_start_one_server_that_later_commands_reuse(tmp_path):
    env = shared_server_env(tmp_path, idle_s=600)
    rows = write_rollouts(tmp_path / "r.jsonl")
    try:
        # Two commands at once on a machine with no server: one starts it, the other waits for it.
        first = [rmforge(env, tmp_path, "import", "rollouts", rows, "--db", tmp_path / f"{n}.duckdb") for n in "ab"]
        results = [finished(process) for process in first]
        assert [code for code, _ in results] == [0, 0], results
        assert sum(STARTED in err for _, err in results) == 1, results
        state = state_of(tmp_path)
        assert psutil.pid_exists(state["pid"])  # it outlived the command that started it

        code, err = finished(rmforge(env, tmp_path, "annotate", "--annotator", "answer", "--db", tmp_path / "a.duckdb"))
        assert code == 0 and STARTED not in err, err
        assert state_of(tmp_path)["pid"] == state["pid"]
        runs = httpx.post(f"{state['api_url']}/flow_runs/filter", json={}, timeout=30).json()
        assert len(runs) == 3  # both imports and the annotate ran on it
    finally:
        subprocess.run([sys.executable, "-m", "rmforge.cli", "server", "stop"], env=env, timeout=60)
    assert wait_for_exit(state["pid"], 30)


# A flow that calls no Prefect API for longer than the server's idle limit (an engine starting).
QUIET_FLOW = textwrap.dedent("""
    import time
    from rmforge.api import running_flows
    with running_flows():
        from prefect import flow, task

        @task
        def add_one(x):
            return x + 1

        @flow
        def quiet_then_busy():
            time.sleep(8)
            return add_one(1)

        print("result", quiet_then_busy())
""")


@pytest.mark.slow
def test_an_unused_server_stops_itself_but_never_during_a_run(tmp_path):
    env = shared_server_env(tmp_path, idle_s=3)
    try:
        run = subprocess.run(
            [sys.executable, "-c", QUIET_FLOW], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0 and "result 2" in run.stdout, run.stderr
        state = state_of(tmp_path)
        assert wait_for_exit(state["pid"], 60), "the server kept running unused"
        assert "stopping" in Path(state["log"]).read_text()
    finally:
        subprocess.run([sys.executable, "-m", "rmforge.cli", "server", "stop"], env=env, timeout=60)


@pytest.mark.slow
def test_no_shared_server_runs_on_a_server_of_its_own(tmp_path):
    env = shared_server_env(tmp_path, idle_s=600)
    rows = write_rollouts(tmp_path / "r.jsonl")
    code, err = finished(
        rmforge(env, tmp_path, "--no-shared-server", "import", "rollouts", rows, "--db", tmp_path / "s.duckdb")
    )
    assert code == 0 and STARTED not in err, err
    assert not (tmp_path / "state" / "rmforge-server.json").exists()


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_bad_idle_limit_is_named(monkeypatch, value):
    monkeypatch.setenv("RMFORGE_SERVER_IDLE_S", value)
    with pytest.raises(UserError, match=f"RMFORGE_SERVER_IDLE_S='{value}'"):
        idle_stop_seconds()
