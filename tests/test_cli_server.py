"""`rmforge server start|status|stop`: a background Prefect server that later commands find,
and that answers its own UI only (no other site, no rebound DNS name)."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from rmforge.schemas.config import StepSplitConfig
from rmforge.store import Store
from rmforge.tasks.rollouts import import_rollouts
from rmforge.tasks.steps import split_rollout_steps
from tests.cross_origin import FOREIGN_HOST_HEADERS, FOREIGN_ORIGIN_HEADERS, fetch_from, foreign_site
from tests.review.conftest import browser  # noqa: F401 (a fixture)
from tests.servers import ChatServer

pytestmark = pytest.mark.slow  # `rmforge server` and CLI subprocesses

REPO = Path(__file__).resolve().parent.parent
expect = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra").expect
# Seconds a command may take to give up once its Prefect server is gone (Prefect's default
# client retries alone waited over two minutes).
LOST_SERVER_BOUND_S = 30


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RMFORGE_STATE_DIR": str(tmp_path / "state"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    env.pop("PREFECT_API_URL", None)
    return env


class Cli:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.env = server_env(tmp_path)

    def __call__(self, *args):
        return subprocess.run(
            [sys.executable, "-m", "rmforge.cli", *map(str, args)],
            env=self.env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture(scope="module")
def rmforge(tmp_path_factory):
    return Cli(tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def prefect_server(rmforge):
    """One `rmforge server start` for the module (it takes 20-40 s here); its state."""
    port = free_port()
    started = rmforge("server", "start", "--port", port)
    assert started.returncode == 0, started.stderr
    assert f"http://127.0.0.1:{port}" in started.stdout
    yield json.loads((rmforge.tmp_path / "state" / "rmforge-server.json").read_text())
    rmforge("server", "stop")  # a no-op once test_stop_ends_the_server ran


def variable_names(api_url: str) -> set[str]:
    return {v["name"] for v in httpx.post(f"{api_url}/variables/filter", json={}, timeout=10).json()}


def test_commands_use_the_running_server(rmforge, prefect_server):
    assert "answering" in rmforge("server", "status").stdout
    assert f"pid {prefect_server['pid']}" in rmforge("server", "start").stdout  # the running one, not a second

    rows = rmforge.tmp_path / "r.jsonl"
    rows.write_text(
        json.dumps(
            {"problem_id": "p", "question": "1 + 1?", "gold_answer": "2", "response": "1 + 1 = 2. The answer is 2."}
        )
        + "\n"
    )
    imported = rmforge("import", "rollouts", rows, "--db", rmforge.tmp_path / "s.duckdb")
    assert imported.returncode == 0, imported.stderr
    flows = httpx.post(f"{prefect_server['api_url']}/flows/filter", json={}, timeout=10).json()
    assert "import-rollouts" in {f["name"] for f in flows}  # the command ran against this server


def assert_only_own_origin_answered(api_url: str) -> None:
    port = httpx.URL(api_url).port
    own = {"Origin": f"http://localhost:{port}"}
    assert httpx.get(f"{api_url}/health", timeout=10).status_code == 200  # clients that send no Origin
    answered = httpx.get(f"{api_url}/health", headers=own, timeout=10)
    assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == own["Origin"]

    refused = httpx.get(f"{api_url}/health", headers=FOREIGN_ORIGIN_HEADERS, timeout=10)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    preflight = httpx.options(
        f"{api_url}/variables/",
        timeout=10,
        headers={
            **FOREIGN_ORIGIN_HEADERS,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code >= 400 and "access-control-allow-origin" not in preflight.headers
    planted = httpx.post(
        f"{api_url}/variables/", json={"name": "planted", "value": "x"}, headers=FOREIGN_ORIGIN_HEADERS, timeout=10
    )
    assert planted.status_code == 403 and "planted" not in variable_names(api_url)

    rebound = httpx.get(f"{api_url}/health", headers=FOREIGN_HOST_HEADERS, timeout=10)
    assert rebound.status_code == 400


def test_other_origins_and_hosts_are_refused(prefect_server):
    assert_only_own_origin_answered(prefect_server["api_url"])


def test_the_ui_works_and_another_site_cannot_use_the_api(prefect_server, browser):  # noqa: F811
    api_url = prefect_server["api_url"]
    port = httpx.URL(api_url).port
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        failed: list[str] = []
        # The UI cancels calls it no longer needs (net::ERR_ABORTED); a refused one is ERR_FAILED.
        page.on(
            "requestfailed",
            lambda request: request.failure == "net::ERR_ABORTED" or failed.append(f"{request.url} {request.failure}"),
        )
        # From localhost the UI calls its API at 127.0.0.1: a cross-origin call it must keep.
        for ui_url in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/"):
            with page.expect_response(lambda r: "/api/" in r.url) as first_api_call:
                page.goto(ui_url)
            assert first_api_call.value.status == 200, first_api_call.value.url
            expect(page.get_by_text("Dashboard").first).to_be_visible(timeout=30_000)
            assert not [url for url in failed if "/api/" in url], failed

        with foreign_site() as foreign_url:
            page.goto(foreign_url)
            assert fetch_from(page, f"{api_url}/health") == "blocked"
            assert (
                fetch_from(
                    page,
                    f"{api_url}/flow_runs/filter",
                    {"method": "POST", "headers": {"Content-Type": "application/json"}, "body": "{}"},
                )
                == "blocked"
            )
            assert (
                fetch_from(
                    page,
                    f"{api_url}/variables/",
                    {
                        "method": "POST",
                        "headers": {"Content-Type": "application/json"},
                        "body": json.dumps({"name": "from_another_site", "value": "x"}),
                    },
                )
                == "blocked"
            )
            # no-cors: the browser sends it without asking; the server must refuse it itself
            fetch_from(
                page,
                f"{api_url}/variables/",
                {"method": "POST", "mode": "no-cors", "body": json.dumps({"name": "sent_blind", "value": "x"})},
            )
        assert not {"from_another_site", "sent_blind"} & variable_names(api_url)
    finally:
        context.close()


TEMPORARY_SERVER = textwrap.dedent("""
    import sys
    from rmforge.server import bind_temporary_server_to_this_process
    bind_temporary_server_to_this_process()
    from prefect.server.api.server import SubprocessASGIServer
    server = SubprocessASGIServer()
    server.start(timeout=120)
    print(server.api_url, flush=True)
    sys.stdin.read()
""")


def test_the_temporary_server_answers_its_own_origin_only(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", TEMPORARY_SERVER],
        env=server_env(tmp_path),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        api_url = process.stdout.readline().strip()
        assert api_url.startswith("http://127.0.0.1:"), api_url
        assert_only_own_origin_answered(api_url)
    finally:
        process.stdin.close()  # the script ends; its server dies with it
        process.wait(timeout=60)


def test_a_server_lost_mid_run_fails_fast_with_one_line(tmp_path):
    """The background server is killed while `annotate` waits for the model: the command
    stops within LOST_SERVER_BOUND_S with one line naming the server, the run is `failed`."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RMFORGE_STATE_DIR": str(tmp_path / "state"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    env.pop("PREFECT_API_URL", None)
    db = str(tmp_path / "s.duckdb")
    rows = tmp_path / "r.jsonl"
    rows.write_text(
        json.dumps(
            {
                "problem_id": "p",
                "question": "What is 2 + 3 + 4?",
                "gold_answer": "9",
                "response": "2 + 3 = 5.\n\n5 + 4 = 10.\n\nThe answer is 10.",
            }
        )
        + "\n"
    )
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
    started = subprocess.run(
        [sys.executable, "-m", "rmforge.cli", "server", "start", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr
    state = json.loads((tmp_path / "state" / "rmforge-server.json").read_text())
    command = subprocess.Popen(
        [sys.executable, "-m", "rmforge.cli", "annotate", "--annotator", "mc", "--config", str(config), "--db", db],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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


def test_stop_ends_the_server(rmforge, prefect_server):
    """Runs last: it stops the module's server."""
    stopped = rmforge("server", "stop")
    assert stopped.returncode == 0 and f"pid {prefect_server['pid']}" in stopped.stdout
    deadline = time.monotonic() + 30
    while psutil.pid_exists(prefect_server["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(prefect_server["pid"])
    after = rmforge("server", "status")
    assert after.returncode == 1 and "No background Prefect server" in after.stdout
