"""Crash safety you can see: heartbeats, `crashed` runs, and SIGKILL + rerun == a clean run.

The end-to-end test runs `rmforge run` as real processes against a shared Prefect server and a
loopback OpenAI-compatible server with deterministic replies, kills it with SIGKILL
mid-generation and mid-annotation (from inside the model server, on the n-th request of a
stage, so the kill lands inside the stage on any machine), reruns, and compares every table
with an uninterrupted run's.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from rmforge.flows.runs import tracked_run
from rmforge.schemas.records import RunRecord, utc_now
from rmforge.schemas.tables import TABLES
from rmforge.store import Store
from rmforge.store.runs import Heartbeat
from tests.servers import ChatServer
from tests.test_cli import invoke

pytestmark = pytest.mark.slow  # SIGKILLed CLI subprocesses

REPO = Path(__file__).resolve().parent.parent


def _run(run_id, status="running", heartbeat_ago_s=None, heartbeat_s=1.0, flow="annotate"):
    record = RunRecord(run_id=run_id, flow=flow, config="{}", status=status, heartbeat_s=heartbeat_s)
    if heartbeat_ago_s is not None:
        record.heartbeat_at = utc_now() - timedelta(seconds=heartbeat_ago_s)
    return record


def _health(db):
    with Store(db, read_only=True) as store:
        return {r["run_id"]: r["status"] for r in store.rows("SELECT run_id, status FROM runs_health")}


def test_a_running_run_whose_heartbeat_stopped_shows_crashed(db):
    with Store(db) as store:
        store.write(
            "runs",
            [
                _run("beating", heartbeat_ago_s=0.5),
                _run("stopped", heartbeat_ago_s=10),  # 10 s > 3 beats of 1 s
                _run("slow-beat", heartbeat_ago_s=10, heartbeat_s=30),  # its beats are 30 s apart
                _run("finished", status="completed", heartbeat_ago_s=3600),
            ],
        )
    assert _health(db) == {"beating": "running", "stopped": "crashed", "slow-beat": "running", "finished": "completed"}
    result = invoke("status", "--db", db)
    assert result.exit_code == 0, result.output
    assert "crashed" in result.stdout and "resumes where the crashed run stopped" in result.stdout


def test_the_next_run_of_the_flow_marks_the_crashed_run_and_says_it_resumes_it(db, monkeypatch):
    monkeypatch.setenv("RMFORGE_HEARTBEAT_S", "1")
    with Store(db) as store:
        store.write(
            "runs", [_run("old-crash", heartbeat_ago_s=60), _run("other-flow", heartbeat_ago_s=60, flow="curate")]
        )
    with tracked_run(db, "annotate", {"x": 1}) as run:
        assert run.resumes == "old-crash"
    with Store(db, read_only=True) as store:
        rows = {r["run_id"]: r for r in store.rows("SELECT run_id, status, summary FROM runs")}
    assert rows["old-crash"]["status"] == "crashed"  # for good, in the table itself
    assert rows["other-flow"]["status"] == "running"  # another flow's crash is its own flow's to resume
    assert rows[run.run_id]["status"] == "completed"
    assert '"resumes":"old-crash"' in rows[run.run_id]["summary"].replace(" ", "")
    with tracked_run(db, "annotate", {"x": 1}) as next_run:
        assert next_run.resumes is None  # resumed once already, never again


def test_heartbeat_refreshes_the_row_and_a_failed_beat_never_raises(db, tmp_path, caplog):
    with Store(db) as store:
        store.write("runs", [_run("alive", heartbeat_ago_s=60)])
    with Heartbeat(db, "alive", interval=0.1):
        time.sleep(1.0)
    assert _health(db) == {"alive": "running"}
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    beat = Heartbeat(str(blocked / "store.duckdb"), "alive", interval=0.1)  # cannot even be created
    beat.beat()
    assert "heartbeat skipped" in caplog.text


# ---------------------------------------------------------------- SIGKILL, end to end

CONFIG = """
problems: {kind: arithmetic, count: 6, min_steps: 2, max_steps: 3}
sampling: {n: 2, max_tokens: 64}
batch_size: 2
curation: {near_dedupe: false}
"""


class KillSwitch:
    """SIGKILLs the command's process group when the model receives the n-th request of a
    kind (`generate` or `judge`): the command is then waiting on that request, so the kill
    lands inside the stage, after the batches before it were written, on any machine speed."""

    def __init__(self):
        self.lock, self.armed = threading.Lock(), None

    def arm(self, pgid, kind, nth):
        self.armed = {"pgid": pgid, "kind": kind, "left": nth}

    def on_request(self, kind):
        with self.lock:
            if self.armed and self.armed["kind"] == kind:
                self.armed["left"] -= 1
                if self.armed["left"] == 0:
                    os.killpg(self.armed["pgid"], signal.SIGKILL)
                    self.armed = None


KILL_SWITCH = KillSwitch()


def _respond(body, index):
    prompt = body["messages"][-1]["content"]
    if "<paragraph_0>" in prompt:  # the judge: a deterministic verdict per sample
        if index == 0:
            KILL_SWITCH.on_request("judge")
        return f"Checked each paragraph.\nVERDICT: {sum(map(ord, prompt)) % 3 - 1 + index % 2}"
    if index == 0:
        KILL_SWITCH.on_request("generate")
    h = sum(map(ord, prompt)) % 7 + index
    return (
        f"Step 1: 2 + {h} = {2 + h}\nStep 2: {2 + h} * 3 = {(2 + h) * 3 + index % 2}\n"
        f"The answer is \\boxed{{{(2 + h) * 3 + index % 2}}}"
    )


@pytest.fixture(scope="module")
def chat():
    server = ChatServer(_respond)
    yield server
    server.close()


def _rmforge_run(db, tmp_path, prefect_api, chat, kill_at=None):
    """`rmforge -v run ...`; with `kill_at` = (request kind, n), SIGKILLed when the model gets
    the n-th request of that kind. Returns (exit code, stderr, stdout)."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": prefect_api, "RMFORGE_HEARTBEAT_S": "1"}
    command = [
        sys.executable,
        "-m",
        "rmforge.cli",
        "-v",
        "run",
        "--config",
        str(config),
        "--db",
        str(db),
        "--backend",
        "openai",
        "--base-url",
        chat.url,
        "--model",
        "m",
        "--annotators",
        "answer,z3_arith,judge",
    ]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if kill_at:
        KILL_SWITCH.arm(process.pid, *kill_at)
    try:
        out, err = process.communicate(timeout=600)
        return process.returncode, err, out
    finally:
        KILL_SWITCH.armed = None
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def _run_lines(err):
    """The command's own log lines (not the HTTP client's), for a failure message."""
    return "\n".join(line for line in err.splitlines() if "HTTP Request" not in line)[-4000:]


def _contents(db):
    """Every table but `runs`, without run ids and timestamps, as sorted rows."""
    tables = {}
    with Store(db, read_only=True) as store:
        for name in TABLES:
            if name == "runs":
                continue
            columns = [c for c in TABLES[name].record.model_fields if c != "run_id" and not c.endswith("_at")]
            tables[name] = sorted(map(repr, store.execute(f"SELECT {', '.join(columns)} FROM {name}")))
    return tables


def _runs(db):
    with Store(db, read_only=True) as store:
        return store.rows("SELECT run_id, flow, status, summary FROM runs_health ORDER BY started_at")


def test_sigkill_during_generation_and_annotation_then_rerun_equals_a_clean_run(tmp_path, prefect_api, chat):
    clean = tmp_path / "clean.duckdb"
    code, err, _ = _rmforge_run(clean, tmp_path, prefect_api, chat)
    assert code == 0, err[-3000:]
    expected = _contents(clean)
    assert expected["rollouts"] and expected["step_labels"] and expected["outcome_labels"]

    crashed = tmp_path / "crashed.duckdb"
    code, err, _ = _rmforge_run(crashed, tmp_path, prefect_api, chat, kill_at=("generate", 5))  # batch 3's first prompt
    assert code == -signal.SIGKILL, err[-3000:]
    assert 4 <= len(_contents(crashed)["rollouts"]) < len(expected["rollouts"])  # killed mid-generation
    time.sleep(3.5)  # three missed beats
    assert {r["flow"]: r["status"] for r in _runs(crashed)} == {"pipeline": "crashed", "generate": "crashed"}

    # The rerun resumes generation, then is killed in the middle of annotation (`judge`'s
    # second batch, after `answer` and `z3_arith` are done).
    code, err, _ = _rmforge_run(crashed, tmp_path, prefect_api, chat, kill_at=("judge", 3))
    assert code == -signal.SIGKILL, err[-3000:]
    partial = _contents(crashed)
    assert partial["rollouts"] == expected["rollouts"]
    labelled = len(partial["step_labels"]) + len(partial["outcome_labels"])
    assert 0 < labelled < len(expected["step_labels"]) + len(expected["outcome_labels"])

    time.sleep(3.5)
    code, err, out = _rmforge_run(crashed, tmp_path, prefect_api, chat)
    assert code == 0, _run_lines(err)
    assert _contents(crashed) == expected  # same keys, same verdicts, nothing twice

    runs = _runs(crashed)
    statuses = [(r["flow"], r["status"]) for r in runs]
    assert statuses.count(("generate", "crashed")) == 1 and statuses.count(("annotate", "crashed")) == 1
    assert statuses.count(("pipeline", "crashed")) == 2
    assert not any(status == "running" for _, status in statuses)
    first_generate, *_ = [r for r in runs if r["flow"] == "generate"]
    pipelines = [r["run_id"] for r in runs if r["flow"] == "pipeline"]
    crashed_annotate = next(r for r in runs if r["flow"] == "annotate" and r["status"] == "crashed")
    resumed = [(r["flow"], json.loads(r["summary"]).get("resumes")) for r in runs if r["status"] == "completed"]
    # each crashed stage was resumed once, by the next run of it that completed (a killed run
    # records nothing at its end: the second pipeline's resume of the first is in no summary)
    assert sorted(pair for pair in resumed if pair[1]) == sorted(
        [("pipeline", pipelines[1]), ("generate", first_generate["run_id"]), ("annotate", crashed_annotate["run_id"])]
    ), runs
    assert f"(resumed after crashed run {crashed_annotate['run_id']})" in out  # the command says so
