"""The DuckLake store against a real PostgreSQL catalog started here (Parquet data in a temp folder)."""

import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pytest

from rmforge.schemas.config import GeneratorConfig, StepSplitConfig
from rmforge.schemas.records import Rollout
from rmforge.schemas.tables import TABLES
from rmforge.store import Store, resolve_store
from rmforge.tasks import chunks
from rmforge.tasks.annotate import make_annotator
from rmforge.tasks.rollouts import import_rollouts
from rmforge.tasks.steps import split_rollout_steps
from tests.builders import make_problem, make_rollout
from tests.tasks.test_annotate import annotate_one_batch, start_runs
from tests.tasks.test_store_concurrency import VOLATILE, write_rollouts

ROOT = Path(__file__).resolve().parents[2]
ANNOTATORS = ["answer", "z3_arith"]


def postgres_programs():
    """The folder holding postgres, initdb, pg_ctl and createdb, or None."""
    for candidate in [shutil.which("postgres"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)]:
        if candidate:
            folder = Path(candidate).resolve().parent
            if all((folder / p).exists() for p in ("initdb", "pg_ctl", "createdb")):
                return folder
    return None


class Postgres:
    """A throwaway PostgreSQL cluster listening on a Unix socket only."""

    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self.socket_dir = Path(tempfile.mkdtemp(prefix="rmforge-pg-"))
        # postgres refuses to run as root: run it as `nobody` then (CI runs as root).
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.socket_dir, nobody.pw_uid, nobody.pw_gid)
            self.as_user = ["runuser", "-u", "nobody", "--"]
        self.data = self.socket_dir / "data"
        self.databases = 0

    def _run(self, *args) -> None:
        done = subprocess.run([*self.as_user, *map(str, args)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        self._run(self.programs / "initdb", "-D", self.data, "-A", "trust", "-U", "rmforge", "--no-sync")
        options = f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off"
        self._run(
            self.programs / "pg_ctl", "-D", self.data, "-l", self.socket_dir / "log", "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._run(self.programs / "pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def lake(self, data_folder: Path) -> str:
        """A new empty catalog database, as an rmforge `ducklake:` URL."""
        self.databases += 1
        name = f"lake{self.databases}"
        self._run(self.programs / "createdb", "-h", self.socket_dir, "-U", "rmforge", name)
        return f"ducklake:postgres:dbname={name} host={self.socket_dir} user=rmforge;data={data_folder}/"


@pytest.fixture(scope="module")
def postgres():
    programs = postgres_programs()
    if programs is None:
        pytest.skip(
            "no PostgreSQL server programs (postgres, initdb, pg_ctl, createdb) on PATH or in "
            "/usr/lib/postgresql/*/bin: apt-get install postgresql"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without `runuser` to start postgres as an unprivileged user")
    server = Postgres(programs)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def lake(postgres, tmp_path):
    return postgres.lake(tmp_path / "lake")


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_a_lake_url_is_kept_as_given(monkeypatch):
    url = "ducklake:postgres:dbname=x host=/tmp//pg;data=s3://bucket/lake/"
    assert resolve_store(url).url == url
    monkeypatch.setenv("RMFORGE_DB", url)
    assert resolve_store(None).url == url


def test_a_lake_location_is_named_without_secrets_or_paths(lake_db):
    server = resolve_store("ducklake:postgres:dbname=lake host=db.example password=hunter2;data=s3://bucket/lake/")
    assert server.is_lake and server.path is None
    assert server.exists()  # a catalog in a server is checked when attached
    assert "hunter2" not in server.label and "hunter2" not in str(server)
    assert server.name == "ducklake:postgres:dbname=lake"
    local = resolve_store(lake_db)
    assert local.lake_data_path.endswith("/lake/") and local.name == "ducklake:catalog.ducklake"
    assert not local.exists()
    Store(lake_db).close()
    assert local.exists()


def test_lake_writes_are_idempotent_on_the_key_and_transactions_all_or_nothing(lake):
    problem = make_problem()
    rollouts = [make_rollout(problem, f"answer {i}", index=i) for i in range(3)]
    with Store(lake) as store:
        assert store.write("problems", [problem]) == 1
        assert store.write("rollouts", rollouts) == 3
        assert store.write("rollouts", rollouts + rollouts) == 0
        store.write("rollouts", [rollouts[0].model_copy(update={"model": "other"})], on_conflict="replace")
        assert sorted(r.model for r in store.records(Rollout, "SELECT * FROM rollouts")) == ["other", "test", "test"]
        store.begin()
        store.execute("DELETE FROM rollouts")
        store.write("problems", [make_problem("What is 1 + 1?", "2")])
    with Store(lake) as store:  # closed without commit: nothing of it landed
        assert store.counts()["rollouts"] == 3 and store.counts()["problems"] == 1
    with Store(lake, read_only=True) as store:
        assert store.count("rollouts") == 3
        with pytest.raises(duckdb.InvalidInputException, match="read-only"):
            store.execute("DELETE FROM rollouts")


# argv[1]: lake URL, argv[2]: worker number. Every worker writes the same keys, half of them as replace.
OVERLAPPING_WRITER = """
import sys
from rmforge.store import Store
from tests.builders import make_problem, make_rollout
problem = make_problem()
rollouts = [make_rollout(problem, f"answer {i}", index=i) for i in range(60)]
with Store(sys.argv[1]) as store:
    for start in range(0, 60, 6):
        with store.transaction():
            store.write("rollouts", rollouts[start:start + 6],
                        on_conflict="replace" if (start // 6 + int(sys.argv[2])) % 2 else "ignore")
            store.write("problems", [problem])
"""


def test_overlapping_writers_never_duplicate_a_key(lake):
    with Store(lake):
        pass  # tables exist before the writers race
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", OVERLAPPING_WRITER, lake, str(i)], env=env(), stderr=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    for writer in writers:
        assert writer.wait(timeout=600) == 0, writer.stderr.read()
    with Store(lake, read_only=True) as store:
        assert store.execute("SELECT count(*), count(DISTINCT rollout_id) FROM rollouts") == [(60, 60)]
        assert store.count("problems") == 1


def test_cli_sql_reads_a_lake(lake):
    with Store(lake) as store:
        store.write("problems", [make_problem()])
    for args, extra in ((["--db", lake], {}), ([], {"RMFORGE_DB": lake})):
        result = subprocess.run(
            [sys.executable, "-m", "rmforge.cli", "sql", "SELECT gold_answer FROM problems", "--format", "csv", *args],
            capture_output=True,
            text=True,
            env={**env(), **extra},
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["gold_answer", "7"]


# argv[1]: lake URL, argv[2]: JSON list of [annotator, rollout ids] batches for this worker, each
# labelled and written as the annotate flow does it.
WORKER = """
import json, sys
from rmforge.schemas.config import GeneratorConfig
from rmforge.tasks.annotate import make_annotator
from tests.tasks.test_annotate import annotate_one_batch
for annotator, rollout_ids in json.loads(sys.argv[2]):
    annotate_one_batch(sys.argv[1], make_annotator(annotator, None, GeneratorConfig()), rollout_ids, "worker")
"""

# argv[1]: lake URL, argv[2]: file that ends the loop once it exists. Prints one JSON line per
# snapshot: [annotator, rollout_id, labels] per done-marker, labels -1 for labels without one.
READER = """
import json, os, sys
from rmforge.store import Store
LABELS = "(SELECT rollout_id, annotator, config_hash FROM step_labels UNION ALL " \\
         "SELECT rollout_id, annotator, config_hash FROM outcome_labels)"
QUERY = f'''
SELECT c.annotator, c.rollout_id, (SELECT count(*) FROM {LABELS} l WHERE l.rollout_id = c.rollout_id
       AND l.annotator = c.annotator AND l.config_hash = c.config_hash) AS labels
FROM annotator_costs c
UNION ALL
SELECT l.annotator, l.rollout_id, -1 FROM {LABELS} l WHERE NOT EXISTS (SELECT 1 FROM annotator_costs c
       WHERE c.rollout_id = l.rollout_id AND c.annotator = l.annotator AND c.config_hash = l.config_hash)
'''
while True:
    stop = os.path.exists(sys.argv[2])  # one more snapshot after the workers are done
    with Store(sys.argv[1], read_only=True) as store:
        print(json.dumps(store.execute(QUERY)), flush=True)
    if stop:
        break
"""


def load(db, rollouts_file):
    import_rollouts.fn(db, str(rollouts_file), "import")
    split_rollout_steps.fn(db, StepSplitConfig())
    with Store(db) as store:
        return [r["rollout_id"] for r in store.rows("SELECT rollout_id FROM rollouts ORDER BY rollout_id")]


def table_content(db):
    with Store(db, read_only=True) as store:
        content = {}
        for name, spec in TABLES.items():
            columns = ", ".join(f'"{c}"' for c in spec.columns if c not in VOLATILE)
            content[name] = sorted(map(repr, store.execute(f"SELECT {columns} FROM {name}")))
            keys = ", ".join(f'"{c}"' for c in spec.primary_key)
            total, distinct = store.execute(f"SELECT count(*), count(DISTINCT ({keys})) FROM {name}")[0]
            assert total == distinct, f"{name}: duplicated keys"
        return content


def test_three_workers_annotate_disjoint_batches_while_a_reader_sees_whole_batches(lake, tmp_path):
    write_rollouts(tmp_path / "rollouts.jsonl", n_problems=10)
    rollout_ids = load(lake, tmp_path / "rollouts.jsonl")
    batches = [(name, batch) for batch in chunks(rollout_ids, 3) for name in ANNOTATORS]

    # The same batches one after another into a DuckDB file: what the lake must hold afterwards.
    reference_db = str(tmp_path / "reference.duckdb")
    assert load(reference_db, tmp_path / "rollouts.jsonl") == rollout_ids
    for name, batch in batches:
        annotate_one_batch(reference_db, make_annotator(name, None, GeneratorConfig()), batch, "sequential")
    with Store(reference_db, read_only=True) as store:
        expected_labels = {
            (r["annotator"], r["rollout_id"]): r["n"]
            for r in store.rows(
                "SELECT annotator, rollout_id, count(*) AS n FROM (SELECT rollout_id, annotator FROM step_labels "
                "UNION ALL SELECT rollout_id, annotator FROM outcome_labels) GROUP BY ALL"
            )
        }

    stop = tmp_path / "workers-done"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, lake, str(stop)],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    snapshots = [json.loads(reader.stdout.readline())]  # the reader is up before the workers start
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, lake, json.dumps(batches[i::3])],
            env=env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for worker in workers:
        assert worker.wait(timeout=900) == 0, worker.stderr.read()
    workers_s = time.monotonic() - started
    stop.touch()
    snapshots += [json.loads(line) for line in reader.stdout]
    assert reader.wait(timeout=300) == 0, reader.stderr.read()

    # Nothing lost, nothing duplicated: the lake equals the sequential run, keys unique.
    assert table_content(lake) == table_content(reference_db)

    # Every snapshot holds whole batches: labels only with their rollout's done-marker, all of them.
    batch_of = {(name, rollout_id): i for i, (name, batch) in enumerate(batches) for rollout_id in batch}
    batch_sizes = [len(batch) for _, batch in batches]
    partial = 0
    for snapshot in snapshots:
        assert all(labels != -1 for _, _, labels in snapshot), "labels without a done-marker"
        assert all(labels == expected_labels.get((a, r), 0) for a, r, labels in snapshot)
        marked: dict[int, int] = {}
        for annotator, rollout_id, _ in snapshot:
            marked[batch_of[annotator, rollout_id]] = marked.get(batch_of[annotator, rollout_id], 0) + 1
        assert all(count == batch_sizes[i] for i, count in marked.items()), "a half-written batch was visible"
        partial += 0 < len(snapshot) < len(batch_of)
    assert partial > 0, (
        f"the reader saw no snapshot while the workers wrote ({len(snapshots)} reads, {workers_s:.0f} s)"
    )


# argv[1]: lake URL, argv[2]: this worker's run id. Labels what it claims, batch by batch, and
# prints the rollout ids it claimed.
CLAIMING_WORKER = """
import json, sys
from rmforge.schemas.config import GeneratorConfig
from rmforge.store.held import HeldStore
from rmforge.tasks.annotate import claimed_batches, make_annotator, pending_rollout_ids
from tests.tasks.test_annotate import annotate_one_batch
db, run_id = sys.argv[1], sys.argv[2]
annotator = make_annotator("z3_arith", None, GeneratorConfig())
claimed = []
with HeldStore(db) as held:
    for batch in claimed_batches(held, annotator, run_id, pending_rollout_ids.fn(db, annotator), 3):
        claimed += batch
        annotate_one_batch(db, annotator, batch, run_id)
print(json.dumps(claimed))
"""


def test_workers_claiming_from_one_lake_label_each_rollout_once(lake, tmp_path):
    write_rollouts(tmp_path / "rollouts.jsonl", n_problems=10)
    rollout_ids = load(lake, tmp_path / "rollouts.jsonl")
    runs = ["worker-a", "worker-b", "worker-c"]
    start_runs(lake, dict.fromkeys(runs, 0))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMING_WORKER, lake, run_id],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in runs
    ]
    claimed = []
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err
        claimed += json.loads(out)
    assert sorted(claimed) == rollout_ids  # every rollout claimed, none twice
    with Store(lake, read_only=True) as store:
        assert store.count("batch_claims") == 0
        assert store.execute("SELECT count(*) FROM annotator_costs WHERE annotator = 'z3_arith'") == [
            (len(rollout_ids),)
        ]


def test_cli_imports_and_annotates_into_a_lake(prefect_harness, lake, tmp_path):
    from prefect.settings import PREFECT_API_URL

    write_rollouts(tmp_path / "rollouts.jsonl", n_problems=2)
    cli_env = {**env(), "PREFECT_API_URL": PREFECT_API_URL.value(), "RMFORGE_DB": lake}
    for args in (
        ["import", "rollouts", str(tmp_path / "rollouts.jsonl")],
        ["annotate", "--annotator", "answer,z3_arith"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "rmforge.cli", *args], capture_output=True, text=True, env=cli_env, timeout=600
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with Store(lake, read_only=True) as store:
        assert store.execute("SELECT flow, status FROM runs ORDER BY flow") == [
            ("annotate", "completed"),
            ("import-rollouts", "completed"),
        ]
        assert store.execute("SELECT count(*) FROM annotator_costs") == [(12,)]  # 6 rollouts x 2 annotators
        assert store.execute("SELECT count(*) FROM step_labels WHERE annotator = 'z3_arith'") == [(12,)]
