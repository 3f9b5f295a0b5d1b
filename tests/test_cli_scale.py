"""Task runner options are checked before any work: a wrong choice is one line and exit 2."""

import sys

import pytest

from tests.test_cli import assert_one_line_error, invoke, runs_in
from tests.test_cli import store_db as store_db_fixture

store_db = store_db_fixture  # a store holding one problem (pytest finds fixtures by module name)

COMMANDS = [("annotate", "--annotator", "answer"), ("run",)]


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_task_runner(store_db, command):
    result = invoke(*command, "--task-runner", "spark", "--db", store_db)
    assert_one_line_error(result, "'spark' is not one of 'threads', 'dask', 'ray'", code=2)
    assert runs_in(store_db) == 0


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("runner, package", [("dask", "prefect-dask"), ("ray", "prefect-ray")])
def test_task_runner_without_its_package(store_db, monkeypatch, command, runner, package):
    monkeypatch.setitem(sys.modules, package.replace("-", "_"), None)  # what an absent package looks like
    result = invoke(*command, "--task-runner", runner, "--db", store_db)
    assert_one_line_error(
        result, f"Invalid value for '--task-runner': {runner} needs {package}", "rmforge[scale]", code=2
    )
    assert runs_in(store_db) == 0


def test_cluster_address_needs_a_cluster_runner_and_workers_are_positive(store_db):
    result = invoke("annotate", "--annotator", "answer", "--cluster-address", "tcp://10.0.0.1:8786", "--db", store_db)
    assert_one_line_error(result, "Invalid value for '--cluster-address': needs --task-runner dask or ray", code=2)
    result = invoke("annotate", "--annotator", "answer", "--workers", "0", "--db", store_db)
    assert_one_line_error(result, "Invalid value for '--workers'", code=2)
    assert runs_in(store_db) == 0


def test_config_file_sets_the_task_runner(store_db, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("compute: {task_runner: threads, workers: 2, address: 'tcp://x:1'}\n")
    result = invoke("annotate", "--annotator", "answer", "--config", config, "--db", store_db)
    assert_one_line_error(result, "Invalid value for '--cluster-address': needs --task-runner dask or ray", code=2)
    config.write_text("compute: {task_runner: mpi}\n")
    result = invoke("annotate", "--annotator", "answer", "--config", config, "--db", store_db)
    assert_one_line_error(result, "compute.task_runner", code=1)
