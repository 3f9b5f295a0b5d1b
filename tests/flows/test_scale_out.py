"""Annotation batches fanned out on threads, Dask and Ray give the tables a sequential run gives.

One Dask cluster (2 worker processes) and one Ray instance serve the whole module: starting
them is most of the cost. The flows reach them through `ComputeConfig.address` (Dask) or the
Ray instance this process already runs, as a user's existing cluster would be reached.
"""

import importlib.util

import pytest

from rmforge.flows.annotate import annotate
from rmforge.flows.import_rollouts import import_rollouts
from rmforge.schemas.config import ComputeConfig
from rmforge.store import Store
from rmforge.tasks import annotate as annotate_tasks
from tests.flows.test_flows import write_rollouts

pytestmark = pytest.mark.slow  # Prefect flows on threads, Dask and Ray workers

ANNOTATORS = ["answer", "z3_arith"]
BATCH = 5  # 30 rollouts: 6 batches per annotator, so several are in flight at once
# Columns that name the run or the clock; everything else must be equal.
VOLATILE = {"run_id", "labeled_at"}


@pytest.fixture(scope="module")
def rollouts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "rollouts.jsonl"
    write_rollouts(path, n_problems=10)
    return str(path)


@pytest.fixture(scope="module")
def dask_address():
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def sequential_tables(prefect_harness, rollouts_file, tmp_path_factory):
    db = str(tmp_path_factory.mktemp("seq") / "s.duckdb")
    tables = labelled_tables(rollouts_file, db, ComputeConfig())
    assert annotate(db, ANNOTATORS, batch_size=BATCH)["answer"]["rollouts"] == 0  # all done
    return tables


def labelled_tables(rollouts_file, db, compute):
    import_rollouts(rollouts_file, db)
    summary = annotate(db, ANNOTATORS, batch_size=BATCH, compute=compute)
    assert summary["answer"]["rollouts"] == 30 and summary["z3_arith"]["rollouts"] == 30
    tables = {}
    with Store(db, read_only=True) as store:
        for table, key in [
            ("step_labels", "rollout_id, annotator, step_index"),
            ("outcome_labels", "rollout_id, annotator"),
            ("annotator_costs", "rollout_id, annotator"),
        ]:
            rows = store.rows(f"SELECT * FROM {table} ORDER BY {key}")
            tables[table] = [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]
    return tables


def test_sequential_run_labels_everything(sequential_tables):
    assert len(sequential_tables["step_labels"]) == 2 * 30  # two steps per rollout
    assert {r["verdict"] for r in sequential_tables["step_labels"]} == {"correct", "incorrect", "unknown"}
    assert len(sequential_tables["annotator_costs"]) == 2 * 30


def test_two_threads_label_z3_in_worker_processes(sequential_tables, rollouts_file, tmp_path):
    tables = labelled_tables(rollouts_file, str(tmp_path / "t.duckdb"), ComputeConfig(workers=2))
    assert tables == sequential_tables
    # answer and z3_arith are CPU-bound: their batches went to the 2-process pool, not to threads
    assert 2 in annotate_tasks._label_processes


def test_dask_workers_in_other_processes_write_one_duckdb_file(
    sequential_tables, rollouts_file, tmp_path, dask_address
):
    compute = ComputeConfig(task_runner="dask", address=dask_address, workers=2)
    tables = labelled_tables(rollouts_file, str(tmp_path / "d.duckdb"), compute)
    assert tables == sequential_tables
    from distributed import Client

    with Client(dask_address) as client:  # the batches ran on both worker processes
        ran = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(ran) == 2 and all(count > 0 for count in ran.values()), ran


@pytest.mark.skipif(
    importlib.util.find_spec("prefect_ray") is None,
    reason="prefect-ray not installed (the `scale` extra; ~240 MB, not in `make install`)",
)
def test_ray_workers_give_the_same_tables(sequential_tables, rollouts_file, tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:  # the task runner finds this process's Ray instance and leaves it running
        tables = labelled_tables(rollouts_file, str(tmp_path / "r.duckdb"), ComputeConfig(task_runner="ray", workers=2))
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert tables == sequential_tables
