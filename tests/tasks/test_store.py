import threading
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from pydantic import BaseModel

from rmforge.schemas.records import AnnotatorCost, Problem, ProcessExample, Rollout, RunRecord
from rmforge.schemas.tables import TABLES, VIEWS, TableSpec, arrow_records, arrow_schema, create_table_sql, to_arrow
from rmforge.store import Store, resolve_store
from tests.builders import make_problem, make_rollout


def test_every_table_has_its_key_columns_not_null():
    for spec in TABLES.values():
        assert set(spec.primary_key) <= set(spec.columns), spec.name
        assert all(
            f'"{column}" VARCHAR NOT NULL' in create_table_sql(spec)
            or f'"{column}" BIGINT NOT NULL' in create_table_sql(spec)
            for column in spec.primary_key
        ), spec.name
        assert arrow_schema(spec).names == spec.columns


def test_threads_writing_overlapping_keys_never_duplicate_one(db):
    """Keys have no constraint behind them: writers of one file take turns, so a key check and
    its insert never interleave with another writer's."""
    problem = make_problem()
    rollouts = [make_rollout(problem, f"answer {i}", index=i) for i in range(40)]
    with Store(db) as store:
        store.write("problems", [problem])

    def writer(offset: int) -> None:
        for start in range(0, 40, 5):
            with Store(db) as store, store.transaction():
                store.write(
                    "rollouts",
                    rollouts[start : start + 5],
                    on_conflict="replace" if (start // 5 + offset) % 2 else "ignore",
                )
                store.write("problems", [problem])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with Store(db) as store:
        assert store.execute("SELECT count(*), count(DISTINCT rollout_id) FROM rollouts") == [(40, 40)]
        assert store.count("problems") == 1


def test_a_write_that_fails_leaves_nothing_and_frees_the_file_for_other_writers(db):
    with Store(db) as store:
        with pytest.raises(duckdb.ConstraintException, match="NOT NULL"):  # a key column may not be NULL
            store.write("problems", pa.table({"problem_id": [None]}))
        assert store.count("problems") == 0
        done = threading.Thread(target=lambda: Store(db).write("problems", [make_problem()]))
        done.start()
        done.join(timeout=30)
        assert not done.is_alive()
        assert store.count("problems") == 1


def test_write_is_idempotent_on_primary_key(db):
    problem = make_problem()
    rollouts = [make_rollout(problem, f"answer {i}", index=i) for i in range(3)]
    with Store(db) as store:
        assert store.write("problems", [problem]) == 1
        assert store.write("rollouts", rollouts) == 3
        assert store.write("rollouts", rollouts) == 0
        assert store.write("problems", [problem]) == 0
        assert store.count("rollouts") == 3


def test_replace_overwrites_and_batch_duplicates_keep_the_last(db):
    problem = make_problem()
    first = make_rollout(problem, "v1")
    second = first.model_copy(update={"model": "other"})
    with Store(db) as store:
        store.write("rollouts", [first, second], on_conflict="replace")
        rows = store.records(Rollout, "SELECT * FROM rollouts")
    assert len(rows) == 1 and rows[0].model == "other"


def test_a_transaction_commits_its_block_or_rolls_it_back(db):
    problem = make_problem()
    with Store(db) as store:
        with pytest.raises(ValueError, match="stop"):
            with store.transaction():
                store.write("problems", [problem])
                raise ValueError("stop")
        assert not store.in_transaction and store.count("problems") == 0
        with store.transaction():  # the failed one gave back this file's write turn
            store.write("problems", [problem])
        assert not store.in_transaction
    with Store(db) as store:
        assert store.count("problems") == 1


def test_failed_transaction_leaves_nothing(db):
    problem = make_problem()
    with Store(db) as store:
        store.begin()
        store.write("problems", [problem])
        with pytest.raises(duckdb.Error):
            store.execute("SELECT * FROM no_such_table")
    with Store(db) as store:
        assert store.count("problems") == 0


def test_read_only_store_rejects_writes_and_missing_files(db, tmp_path):
    with Store(db) as store:
        store.write("problems", [make_problem()])
    with Store(db, read_only=True) as store:
        assert store.rows("SELECT problem_id FROM problems")[0]["problem_id"] == make_problem().problem_id
        with pytest.raises(duckdb.Error):
            store.execute("DELETE FROM problems")
    with pytest.raises(FileNotFoundError):
        Store(tmp_path / "absent.duckdb", read_only=True)


def test_db_path_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("RMFORGE_DB", str(tmp_path / "env.duckdb"))
    assert resolve_store(None).path == tmp_path / "env.duckdb"
    assert resolve_store(str(tmp_path / "x.duckdb")).path == tmp_path / "x.duckdb"
    monkeypatch.delenv("RMFORGE_DB")
    assert resolve_store(None).path.name == "rmforge.duckdb"


def test_problem_ids_are_content_hashes():
    a = Problem.make_id("What is 2+2?", "4")
    assert a == Problem.make_id("What is 2+2? ", "4")
    assert a != Problem.make_id("What is 2+3?", "4")


def test_a_store_from_an_earlier_version_gains_new_columns(db):
    con = duckdb.connect(db)  # annotator_costs as an earlier version made it: no `steps` column
    con.execute(
        "CREATE TABLE annotator_costs (rollout_id VARCHAR NOT NULL, annotator VARCHAR NOT NULL, "
        "config_hash VARCHAR NOT NULL, completions BIGINT, run_id VARCHAR, "
        "PRIMARY KEY (rollout_id, annotator, config_hash))"
    )
    con.execute("INSERT INTO annotator_costs VALUES ('r', 'mc', 'h', 4, 'old')")
    con.close()
    with Store(db) as store:
        rows = store.rows("SELECT * FROM annotator_costs")
    assert rows == [
        {"rollout_id": "r", "annotator": "mc", "config_hash": "h", "completions": 4, "run_id": "old", "steps": None}
    ]
    with Store(db) as store:  # its PRIMARY KEY constraint stays, and writes keep working with it
        row = {**rows[0], "completions": 5, "steps": 2}
        assert store.write("annotator_costs", pa.Table.from_pylist([row]), on_conflict="replace") == 1
        assert store.write("annotator_costs", pa.Table.from_pylist([row])) == 0
        assert store.rows("SELECT completions, steps FROM annotator_costs") == [{"completions": 5, "steps": 2}]


def test_a_store_from_an_earlier_version_gains_the_views(db):
    problem = make_problem()
    kept, dropped = make_rollout(problem, "3 + 4 = 7", index=0), make_rollout(problem, "3 + 4 = 7", index=1)
    with Store(db) as store:
        store.write("problems", [problem])
        store.write("rollouts", [kept, dropped])
        store.execute(
            "INSERT INTO rollout_curation (rollout_id, problem_id, status, run_id) "
            "VALUES (?, ?, 'exact_duplicate', 'r')",
            [dropped.rollout_id, problem.problem_id],
        )
        for name in VIEWS:  # as an earlier version left it: no views yet
            store.execute(f"DROP VIEW {name}")
    stored_views = "SELECT view_name FROM duckdb_views() WHERE database_name = current_database() ORDER BY 1"
    with Store(db, read_only=True) as store:  # read-only: this connection's own, temporary views
        assert store.rows("SELECT rollout_id FROM kept_rollouts") == [{"rollout_id": kept.rollout_id}]
        assert store.execute(stored_views) == []
    with Store(db) as store:  # for writing: the store's for good
        assert store.execute(stored_views) == [(name,) for name in sorted(VIEWS)]
        assert store.rows("SELECT rollout_id FROM kept_rollouts") == [{"rollout_id": kept.rollout_id}]


def test_children_are_key_checked_only_where_their_parent_was_stored(db):
    from rmforge.schemas.records import Step

    problem = make_problem()
    stored, new = make_rollout(problem, "3 + 4 = 7", index=0), make_rollout(problem, "3 + 4 = 8", index=1)

    def steps(rollout, count):
        return [Step(rollout_id=rollout.rollout_id, step_index=i, text=f"step {i}") for i in range(count)]

    with Store(db) as store:
        store.write("problems", [problem])
        with store.transaction():
            assert store.write_children("steps", steps(stored, 2), parent="rollouts") == 2
            store.write("rollouts", [stored])
        with pytest.raises(RuntimeError, match="inside the transaction"):
            store.write_children("steps", steps(new, 1), parent="rollouts")
        with store.transaction():
            # the stored rollout's two steps come again with a third; the new rollout brings two
            written = store.write_children("steps", steps(stored, 3) + steps(new, 2), parent="rollouts")
            store.write("rollouts", [stored, new])
        assert written == 3
        assert store.execute(
            "SELECT rollout_id, count(*), count(DISTINCT step_index) FROM steps GROUP BY 1 ORDER BY 2"
        ) == [(new.rollout_id, 2, 2), (stored.rollout_id, 3, 3)]


def test_records_go_to_arrow_column_by_column_as_their_dumps_would():
    """`to_arrow` reads attributes column by column; it must give what a dict per record gave:
    lists, nested lists, None, timestamps and defaults included."""
    problem = make_problem()
    rollout = make_rollout(problem, "Step 1: 3 + 4 = 7", finish_reason=None)
    example = ProcessExample(
        example_id="e",
        rollout_id=rollout.rollout_id,
        problem_id=problem.problem_id,
        prompt="Q",
        completions=["a", "b"],
        labels=[True, False],
        soft_labels=[0.9, 0.1],
        annotators=["z3_arith"],
        label_supporters=[["z3_arith"], []],
        run_id="r",
    )
    run = RunRecord(run_id="r", flow="annotate", config="{}", status="running", heartbeat_s=None)
    for table, rows in {
        "problems": [problem],
        "rollouts": [rollout, make_rollout(problem, "other", index=1)],
        "process_examples": [example],
        "runs": [run],
        "annotator_costs": [AnnotatorCost(rollout_id="x", annotator="a", config_hash="h", completions=0, run_id="r")],
    }.items():
        by_dict = pa.Table.from_pylist([row.model_dump() for row in rows], schema=arrow_schema(TABLES[table]))
        assert to_arrow(TABLES[table], rows).equals(by_dict), table


def test_rows_are_dicts_by_column_name_in_row_order(db):
    with Store(db) as store:
        assert store.rows("SELECT * FROM (VALUES (2, 'b', NULL), (1, 'a', [1.5])) t(n, s, l)") == [
            {"n": 2, "s": "b", "l": None},
            {"n": 1, "s": "a", "l": [1.5]},
        ]
        assert store.rows("SELECT 1 AS n WHERE false") == []


def test_records_come_back_from_arrow_as_they_went_in_whatever_the_session_time_zone(db):
    """Times go from Arrow to records as ISO strings in UTC (`arrow_records`): the instant must
    survive a session in another zone and microseconds must survive the text."""
    problem = make_problem()
    rollouts = [
        make_rollout(problem, f"answer {i}", index=i).model_copy(
            update={"created_at": datetime(2026, 3, 29, 0, 59, 59, 123456 + i, tzinfo=UTC)}
        )
        for i in range(3)
    ]
    assert arrow_records(Rollout, to_arrow(TABLES["rollouts"], rollouts)) == rollouts
    with Store(db) as store:
        store.write("rollouts", rollouts)
        for zone in ("Europe/Berlin", "America/New_York"):  # Berlin changes its clocks at 01:00 UTC that day
            store.execute(f"SET TimeZone = '{zone}'")
            assert store.records(Rollout, "SELECT * FROM rollouts ORDER BY sample_index") == rollouts


def test_a_table_of_one_column_goes_to_arrow_as_a_column():
    # attrgetter of one name gives a value, not a tuple: a string value must not become its letters
    class Name(BaseModel):
        name: str

    spec = TableSpec("names", Name, ("name",), "one column")
    assert to_arrow(spec, [Name(name="ab"), Name(name="c")]).to_pylist() == [{"name": "ab"}, {"name": "c"}]
