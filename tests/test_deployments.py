"""prefect.yaml's deployments do real work: `prefect deploy --all` to a local server, a process
worker picks up a `prefect deployment run`, and the store gets its labels. Plus the seed a
scheduled run draws and the deployments `rmforge serve` builds from the same file."""

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from rmforge.flows.concurrency import store_limit_name
from rmforge.flows.deployments import served_deployments
from rmforge.flows.generate import resolve_seed
from rmforge.schemas.config import PipelineConfig, StepSplitConfig
from rmforge.store import Store
from rmforge.tasks.rollouts import store_rollouts
from tests.builders import make_problem, make_rollout

pytestmark = pytest.mark.slow  # a Prefect worker process

REPO = Path(__file__).resolve().parent.parent


def _small_store(db):
    problem = make_problem()
    rollouts = [
        make_rollout(problem, "3 + 4 = 7\nThe answer is \\boxed{7}", index=0),
        make_rollout(problem, "3 + 4 = 8\nThe answer is \\boxed{8}", index=1),
    ]
    with Store(db) as store:
        store.write("problems", [problem])
        store_rollouts(store, rollouts, [], StepSplitConfig())
    return db


def test_a_deployment_run_by_a_process_worker_labels_the_store(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    db = _small_store(str(tmp_path / "store.duckdb"))
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PYTHONPATH": str(REPO),
        "RMFORGE_HOME": str(REPO),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }

    def prefect(*args, timeout=300):
        done = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    prefect("work-pool", "create", "rmforge", "--type", "process")
    prefect("--no-prompt", "deploy", "--all")
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "rmforge"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out = prefect(
            "deployment", "run", "annotate/annotate", "-p", f"db={db}", "--watch", "--watch-timeout", "300", timeout=360
        )
    finally:
        worker.terminate()
        try:
            worker_log = worker.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:  # its graceful shutdown can linger (seen > 60 s); not under test
            os.killpg(worker.pid, signal.SIGKILL)
            worker_log = worker.communicate(timeout=30)[0]
    assert "Completed" in out, out + worker_log[-3000:]
    with Store(db, read_only=True) as store:
        verdicts = dict(
            store.execute(
                "SELECT sample_index, o.verdict FROM outcome_labels o "
                "JOIN rollouts USING (rollout_id) WHERE annotator = 'answer'"
            )
        )
        arithmetic = store.execute("SELECT verdict FROM step_labels WHERE annotator = 'z3_arith'")
        runs = store.execute("SELECT flow, status FROM runs")
    assert verdicts == {0: "correct", 1: "incorrect"}
    assert ("incorrect",) in arithmetic  # 3 + 4 = 8 refuted
    assert runs == [("annotate", "completed")]


def test_a_scheduled_seed_comes_from_the_flow_runs_scheduled_time(monkeypatch):
    import rmforge.flows.generate as generate_flow

    config = PipelineConfig.model_validate({"problems": {"seed": "scheduled"}})
    seeds = []
    for night in (datetime(2026, 11, 29, 2, 0, tzinfo=UTC), datetime(2026, 11, 30, 2, 0, tzinfo=UTC)):
        # Prefect's runtime cannot be faked through its environment variables for datetimes;
        # its documentation says to monkeypatch the attribute.
        monkeypatch.setattr(generate_flow, "flow_run", SimpleNamespace(scheduled_start_time=night))
        resolved, origin = resolve_seed(config)
        seeds.append(resolved.problems.seed)
        assert origin == f"seed {resolved.problems.seed} from the scheduled time {night.isoformat()}"
    assert seeds == [202611290200, 202611300200]  # two nights, two batches of problems
    fixed, origin = resolve_seed(PipelineConfig())
    assert fixed.problems.seed == 0 and origin == "seed 0 from the config"


def test_served_deployments_mirror_prefect_yaml():
    deployments = {d.name: d for d in served_deployments()}
    assert set(deployments) == {"nightly-pipeline", "annotate", "curate"}
    nightly = deployments["nightly-pipeline"]
    assert nightly.parameters["config"]["problems"]["seed"] == "scheduled"
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert deployments["annotate"].schedules == []


def test_store_limits_are_per_file_and_lakes_have_none(tmp_path):
    first, second = store_limit_name(str(tmp_path / "a.duckdb")), store_limit_name(str(tmp_path / "b" / "a.duckdb"))
    assert first != second and first.startswith("rmforge-store-a-duckdb-")
    assert store_limit_name(str(tmp_path / "a.duckdb")) == first
    assert store_limit_name("ducklake:postgres:dbname=lake") is None


def test_serve_needs_a_server_that_outlives_it(tmp_path, monkeypatch):
    from tests.test_cli import assert_one_line_error, invoke

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("RMFORGE_STATE_DIR", str(tmp_path))  # no background server recorded here
    assert_one_line_error(invoke("serve"), "rmforge serve needs a Prefect server", "rmforge server start")
