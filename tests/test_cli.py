"""The command line without Prefect: every user error is one line on stderr, a non-zero
exit, no traceback, and is caught before any work starts; `sql` cannot touch files."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from rmforge import __version__
from rmforge.cli import app
from rmforge.console import shown_without_verbose
from rmforge.schemas.records import RunRecord
from rmforge.store import Store
from tests.builders import make_problem

REPO = Path(__file__).resolve().parent.parent


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments, code=1):
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert result.stdout == ""


@pytest.fixture()
def store_db(db):
    with Store(db) as store:
        store.write("problems", [make_problem()])
    return db


def runs_in(db):
    with Store(db, read_only=True) as store:
        return store.count("runs")


@pytest.mark.parametrize(
    "names, fragment",
    [
        ("answer,bogus", "unknown annotator 'bogus'"),
        (",", "no annotator named"),
        ("", "no annotator named"),
    ],
)
def test_annotate_rejects_unknown_or_missing_annotators_before_any_run(store_db, names, fragment):
    result = invoke("annotate", "--annotator", names, "--db", store_db)
    assert_one_line_error(result, fragment, "known: answer")
    assert runs_in(store_db) == 0  # `answer` did not run first


def test_curate_rejects_unknown_annotators(store_db):
    result = invoke("curate", "--annotators", "answer,nope", "--db", store_db)
    assert_one_line_error(result, "--annotators: unknown annotator 'nope'")
    assert runs_in(store_db) == 0


@pytest.mark.parametrize(
    "content, fragments",
    [
        ("generator: [1,\n", ("invalid YAML at line 2",)),
        ("generator:\n  backend: vllm\n  foo: 1\n", ("generator.foo: Extra inputs are not permitted",)),
        ("batchsize: 3\n", ("batchsize: Extra inputs are not permitted",)),
        ("- a\n- b\n", ("expected a mapping", "list")),
        ("annotator_options:\n  answer: {bogus: 1}\n", ("annotator_options.answer: bogus: Extra inputs",)),
        ("annotator_options:\n  nope: {}\n", ("annotator_options: unknown annotator 'nope'",)),
        ("batch_size: 0\n", ("batch_size: Input should be greater than or equal to 1",)),
    ],
)
def test_bad_config_files(store_db, tmp_path, content, fragments):
    config = tmp_path / "config.yaml"
    config.write_text(content)
    result = invoke("annotate", "--annotator", "answer", "--config", config, "--db", store_db)
    assert_one_line_error(result, str(config), *fragments)
    assert runs_in(store_db) == 0


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        (
            "config.yaml",
            "batch_size: 3\nannotators: [answer]\nbatch_size: 4\n",
            "line 3: duplicate key 'batch_size' (first at line 1)",
        ),
        ("config.yaml", "generator:\n  model: a\n  model: b\n", "line 3: duplicate key 'model' (first at line 2)"),
        (
            "config.json",
            '{"batch_size": 3,\n "annotators": ["answer"],\n "batch_size": 4}',
            "line 3: duplicate key 'batch_size' (first at line 1)",
        ),
        (
            "config.json",
            '{"generator": {"model": "a",\n  "model": "b"}}',
            "line 2: duplicate key 'model' (first at line 1)",
        ),
    ],
)
def test_a_config_that_repeats_a_key_is_refused(store_db, tmp_path, name, content, fragment):
    """YAML and Python's JSON reader would keep the last value without a word."""
    config = tmp_path / name
    config.write_text(content)
    # were the config taken, the unknown annotator would still stop the command before any work
    result = invoke("run", "--config", config, "--annotators", "nope", "--db", store_db)
    assert_one_line_error(result, str(config), fragment)


def test_bad_json_config_and_missing_config(store_db, tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"batch_size": 3,}')
    assert_one_line_error(invoke("run", "--config", config, "--db", store_db), "invalid JSON at line 1")
    assert_one_line_error(invoke("run", "--config", tmp_path / "none.yaml"), "none.yaml does not exist")
    assert_one_line_error(invoke("curate", "--config", tmp_path, "--db", store_db), "is a folder")


@pytest.mark.parametrize("command", [("annotate", "--annotator", "answer"), ("run",)])
@pytest.mark.parametrize("size", ["0", "-3"])
def test_batch_size_must_be_positive(store_db, command, size):
    result = invoke(*command, "--batch-size", size, "--db", store_db)
    assert_one_line_error(result, "Invalid value for '--batch-size'", "greater than or equal to 1", code=2)


def test_choices_are_checked(store_db):
    assert_one_line_error(invoke("run", "--backend", "tgi"), "'tgi' is not one of 'vllm', 'openai'", code=2)
    assert_one_line_error(invoke("run", "--source", "web"), "'web' is not one of 'arithmetic'", code=2)
    assert_one_line_error(invoke("sql", "SELECT 1", "--format", "xml", "--db", store_db), "'xml' is not one of", code=2)
    assert_one_line_error(invoke("frobnicate"), "No such command 'frobnicate'", code=2)


def test_import_rollouts_needs_a_file(tmp_path, db):
    assert_one_line_error(invoke("import", "rollouts", tmp_path, "--db", db), "is a folder")
    assert_one_line_error(invoke("import", "rollouts", tmp_path / "none.jsonl", "--db", db), "does not exist")
    # a file that holds nothing to import is refused before any work starts
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n")
    assert_one_line_error(invoke("import", "rollouts", blank, "--db", db), "holds no records")
    not_parquet = tmp_path / "r.parquet"
    not_parquet.write_text("x")
    assert_one_line_error(invoke("import", "processbench", not_parquet, "--db", db), "not a readable Parquet file")
    assert not Path(db).exists()


def test_export_checks(store_db, tmp_path):
    missing = tmp_path / "missing.duckdb"
    assert_one_line_error(invoke("export", "--db", missing, "--out", tmp_path / "out"), "no rmforge database at")
    assert not missing.exists()  # not created as a side effect
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert_one_line_error(invoke("export", "--db", store_db, "--out", a_file), "is a file, expected a folder")
    assert_one_line_error(
        invoke("export", "--db", store_db, "--datasets", "process,bogus"), "unknown dataset 'bogus'", "known: process"
    )
    assert_one_line_error(invoke("export", "--db", store_db, "--datasets", ","), "(none named)")
    assert runs_in(store_db) == 0


@pytest.mark.parametrize("command", [["export"], ["sql", "SELECT 1"], ["annotate", "--annotator", "answer"]])
def test_a_lake_without_its_catalog_file_is_refused_not_created(lake_db, tmp_path, command):
    result = invoke(*command, "--db", lake_db)
    assert_one_line_error(result, "no rmforge database")
    assert not (tmp_path / "catalog.ducklake").exists()


def test_sql_errors_go_to_stderr_only(store_db, tmp_path):
    assert_one_line_error(invoke("sql", "", "--db", store_db), "empty query")
    assert_one_line_error(invoke("sql", "   ", "--db", store_db), "empty query")
    assert_one_line_error(invoke("sql", "SELEC 1", "--db", store_db, "--format", "json"), "syntax error")
    assert_one_line_error(invoke("sql", "SELECT 1", "--db", tmp_path / "none.duckdb"), "no rmforge database")


@pytest.mark.parametrize(
    "statement, fragment",
    [
        ("COPY (SELECT 1) TO '{dir}/leak.csv'", "disabled by configuration"),
        ("COPY problems TO '{dir}/leak.parquet' (FORMAT PARQUET)", "disabled by configuration"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM read_text('/etc/hostname')", "disabled by configuration"),
        ("SELECT * FROM glob('/etc/*')", "disabled by configuration"),
        ("ATTACH '{dir}/other.duckdb' AS other", "disabled by configuration"),
        ("INSTALL httpfs", "disabled by configuration"),
        ("LOAD httpfs", "Loading external extensions is disabled"),
        ("SET enable_external_access = true", "configuration has been locked"),
        ("DROP TABLE problems", "read-only"),
        ("INSERT INTO problems (problem_id, question) VALUES ('x', 'y')", "read-only"),
        ("DELETE FROM problems", "read-only"),
    ],
)
def test_sql_is_read_only_and_sandboxed(store_db, tmp_path, statement, fragment):
    result = invoke("sql", statement.format(dir=tmp_path), "--db", store_db)
    assert_one_line_error(result, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.duckdb"]  # nothing written, nothing attached
    with Store(store_db, read_only=True) as store:
        assert store.count("problems") == 1


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT * FROM problems) TO '{spill}/x.csv'",
        "SELECT * FROM read_csv('{spill}/planted.csv')",
        "SELECT * FROM read_text('{spill}/planted.csv')",
    ],
)
def test_sql_cannot_use_the_spill_folder(store_db, statement):
    # DuckDB allows its own temp folder (`<db>.tmp/`) even with external access off.
    spill = Path(f"{store_db}.tmp")
    spill.mkdir()
    (spill / "planted.csv").write_text("secret\n1\n")
    result = invoke("sql", statement.format(spill=spill), "--db", store_db)
    assert_one_line_error(result, "disabled by configuration")
    assert sorted(p.name for p in spill.iterdir()) == ["planted.csv"]


def test_sql_still_reads_the_store(store_db):
    result = invoke("sql", "SELECT problem_id, gold_answer FROM problems", "--db", store_db, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"problem_id": make_problem().problem_id, "gold_answer": "7"}]


def test_sql_table_shows_brackets_as_they_are(store_db):
    # Rich reads `[...]` as markup: PRM label lists and LaTeX `\\[ x \\]` used to vanish from the table.
    result = invoke("sql", "SELECT [true,false] AS l, '[abc] x' AS t, '\\[ x \\]' AS latex", "--db", store_db)
    assert result.exit_code == 0, result.output
    assert "[true, false]" in result.stdout and "[abc] x" in result.stdout and "\\[ x \\]" in result.stdout


def test_help_shows_the_extra_to_install():
    result = CliRunner().invoke(app, ["run", "-h"], terminal_width=200)
    assert "'rmforge[scale]'" in result.stdout


def test_version_and_short_help():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"rmforge {__version__}"
    result = invoke("annotate", "-h")
    assert result.exit_code == 0 and "--annotator" in result.stdout
    result = invoke("sql", "-h")
    assert "table|csv|json" in result.stdout


def test_unexpected_errors_are_one_line_unless_debug(store_db, monkeypatch):
    def broken(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Store, "counts", broken)
    result = invoke("status", "--db", store_db)
    assert_one_line_error(result, "RuntimeError: disk on fire", "--debug")
    result = invoke("--debug", "status", "--db", store_db)
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


def test_status_shows_counts_and_runs_with_their_state(store_db):
    with Store(store_db) as store:
        store.write(
            "runs",
            [
                RunRecord(run_id="aaaaaaaa-1", flow="annotate", config="{}", status="completed"),
                RunRecord(run_id="bbbbbbbb-2", flow="generate", config="{}", status="cancelled"),
            ],
        )
    result = invoke("status", "--db", store_db)
    assert result.exit_code == 0, result.output
    assert "problems" in result.stdout and "│ 1" in result.stdout
    assert "aaaaaaaa" in result.stdout and "completed" in result.stdout
    assert "bbbbbbbb" in result.stdout and "cancelled" in result.stdout


def test_annotators_lists_what_each_labels_needs_and_its_options(monkeypatch):
    from rmforge.annotators import REGISTRY

    monkeypatch.setenv("PATH", "/nonexistent")  # no lean binary here
    result = invoke("annotators")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert set(REGISTRY) <= set(lines)
    assert "outcomes" in lines["answer"] and "gold answer" in lines["answer"]
    assert "steps (refutes)" in lines["z3_arith"] and "gold answer" not in lines["z3_arith"]
    assert "a model" in lines["mc"] and "gold answer" in lines["mc"] and "probability" in lines["mc"]
    assert "a model" in lines["judge"] and "gold answer" not in lines["judge"]
    assert "unavailable here" in lines["lean"] and "lean" in lines["lean"]
    assert "steps (confirms and refutes)" in lines["code_check"] and "a model" in lines["code_check"]
    assert "unavailable" not in lines["code_check"]  # the sandbox's kernel walls are up here
    assert "    require_kernel_sandbox = True" in result.stdout and "    cpu_s = 10" in result.stdout
    assert "    k = " in result.stdout  # MC options with their defaults
    assert "outcomes" in lines["majority"] and "vote_share" in lines["majority"]
    assert "gold answer" not in lines["majority"] and "    min_share = 0.5" in result.stdout
    assert "steps (confirms and refutes)" in lines["prm"] and "probability" in lines["prm"]
    assert "a process reward model" in lines["prm"] and "gold answer" not in lines["prm"]
    assert "unavailable here: no reward model set" in lines["prm"]
    assert "    correct_threshold = 0.7" in result.stdout and '"step_separator":"<extra_0>"' in result.stdout


def test_import_summaries_say_what_became_of_every_row_one_line_each():
    from rmforge.cli.imports import _labelled_lines, _rollout_import_lines

    summary = {
        "rollouts": 1,
        "problems": 1,
        "new_steps": 3,
        "rows_read": 4,
        "identical_repeats": 2,
        "quarantined": 1,
        "human_step_labels": 3,
        "human_outcome_labels": 1,
    }
    for lines, rows in [(_rollout_import_lines(summary, "db"), "rows"), (_labelled_lines(summary, "db"), "records")]:
        assert lines[0].startswith("Imported 1 new rollout ") and f"from 4 {rows}" in lines[0]
        assert lines[1] == f"2 {rows} repeat a rollout already read or stored (identical, not imported again)"
        assert lines[2].startswith(f"1 {rows[:-1]} quarantined: ")


@pytest.mark.slow  # `rmforge review` in a process
def test_sigterm_stops_review_with_one_line_that_names_no_run(store_db, tmp_path):
    """`review` runs no flow: nothing is marked cancelled in `runs`, so the line must not say so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rmforge.cli", "review", "--db", store_db, "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err == "stopped by SIGTERM\n"


@pytest.mark.parametrize(
    "logger, level, shown",
    [
        ("prefect.flow_runs", logging.WARNING, True),  # a flow's own warning, e.g. rows quarantined
        ("prefect.task_runs", logging.WARNING, True),
        ("prefect.flow_runs", logging.ERROR, False),  # the run failed: the command's error line says why
        ("prefect.task_runs", logging.ERROR, False),
        ("prefect.engine", logging.ERROR, False),
        ("prefect.events.clients", logging.WARNING, False),  # Prefect's bookkeeping
        ("prefect._internal.concurrency", logging.ERROR, False),
        ("prefect", logging.WARNING, False),
        ("prefecture", logging.WARNING, True),
        ("vllm", logging.ERROR, True),
    ],
)
def test_prefect_records_shown_without_verbose(logger, level, shown):
    record = logging.LogRecord(logger, level, __file__, 1, "message", None, None)
    assert shown_without_verbose(record) is shown


def test_counts_are_said_in_the_singular_for_one():
    from rmforge.cli.output import counted, counted_keys
    from rmforge.cli.pipeline import _curate_lines

    assert counted(1, "problem") == "1 problem" and counted(2, "problem") == "2 problems"
    assert counted(0, "row") == "0 rows" and counted(1, "process example") == "1 process example"
    assert (
        counted_keys({"step_labels": 1, "outcomes_decided": 1, "agreed": 1})
        == "1 step label, 1 outcome decided, 1 agreed"
    )
    assert counted_keys({"step_labels": 2, "outcomes_decided": 3}) == "2 step labels, 3 outcomes decided"
    lines = _curate_lines({"datasets": {"preference_pairs": 1, "process_examples": 2, "no_process_example": {}}})
    assert lines == ["  datasets: 1 preference pair, 2 process examples"]


def test_import_summaries_of_one_row_say_one_row():
    from rmforge.cli.imports import _labelled_lines, _rollout_import_lines

    summary = {
        "rollouts": 1,
        "problems": 1,
        "new_steps": 1,
        "rows_read": 1,
        "identical_repeats": 1,
        "quarantined": 1,
        "human_step_labels": 1,
        "human_outcome_labels": 1,
    }
    rollouts = _rollout_import_lines(summary, "db")
    assert rollouts[0] == "Imported 1 new rollout and 1 new problem (1 step) from 1 row into db."
    assert rollouts[1].startswith("1 row repeats a rollout") and rollouts[2].startswith("1 row quarantined")
    labelled = _labelled_lines(summary, "db")
    assert labelled[0] == (
        "Imported 1 new rollout (1 step) with 1 human step label and 1 human final-answer label from 1 record into db."
    )
    assert labelled[1].startswith("1 record repeats a rollout")


def test_sql_caption_counts_rows_in_the_singular(store_db):
    result = invoke("sql", "SELECT 1 AS x", "--db", store_db)
    assert result.exit_code == 0 and "1 row" in result.stdout and "1 rows" not in result.stdout


def test_curate_summary_shows_why_rollouts_have_no_process_example():
    from rmforge.cli.pipeline import _curate_lines

    reasons = {"final answer incorrect but no step refuted": 3, "a step left undecided": 1}
    lines = _curate_lines({"datasets": {"preference_pairs": 2, "process_examples": 5, "no_process_example": reasons}})
    assert lines[0] == "  datasets: 2 preference pairs, 5 process examples"
    assert lines[1:] == [
        "    no process example: 3 final answer incorrect but no step refuted",
        "    no process example: 1 a step left undecided",
    ]


@pytest.mark.parametrize(
    "given, hinted",
    [
        (None, "Next: rmforge annotate --annotator answer,z3_arith"),
        ("my store.duckdb", "Next: rmforge annotate --annotator answer,z3_arith --db 'my store.duckdb'"),
    ],
)
def test_next_hints_carry_the_db_only_when_given(given, hinted):
    from rmforge.cli.imports import _labelled_lines, _rollout_import_lines

    summary = {
        "rollouts": 2,
        "problems": 2,
        "new_steps": 3,
        "rows_read": 2,
        "identical_repeats": 0,
        "quarantined": 0,
        "human_step_labels": 3,
        "human_outcome_labels": 2,
    }
    assert _rollout_import_lines(summary, "db", given)[-1] == hinted
    assert _labelled_lines(summary, "db", given)[-1].startswith(hinted + ", then rmforge curate")
    assert _labelled_lines(summary, "db", given)[-1].endswith(
        "rmforge curate" + (" --db 'my store.duckdb'" if given else "")
    )


def test_annotate_with_only_unavailable_annotators_says_so_before_any_flow(store_db, monkeypatch):
    import rmforge.api

    def no_flows():
        raise AssertionError("a flow started")

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(rmforge.api, "running_flows", no_flows)
    started = time.monotonic()
    result = invoke("annotate", "--annotator", "lean", "--db", store_db)
    assert_one_line_error(result, "lean: unavailable here", code=2)
    assert time.monotonic() - started < 10
    assert runs_in(store_db) == 0


# ------------------------------------------------------------------ errors that used to escape (issue 18)


def run_cli(*args, cwd, prefect_api=None, timeout=300, env_vars=None):
    """The CLI in a subprocess: Prefect's console handlers write stderr there, not into CliRunner."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_vars or {})}
    env.pop("RMFORGE_DB", None)
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "rmforge.cli", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result, time.monotonic() - started


def assert_subprocess_one_line_error(result, *fragments):
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.mark.slow  # CLI subprocess
def test_export_into_a_foreign_folder_is_refused_before_any_flow_starts(store_db, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result, seconds = run_cli("export", "--db", store_db, "--out", out, cwd=tmp_path)
    assert_subprocess_one_line_error(result, str(out), "holds no rmforge export")
    assert seconds < 5, seconds  # no Prefect start-up
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert runs_in(store_db) == 0


@pytest.mark.slow  # CLI subprocesses
@pytest.mark.parametrize("command", [["sql", "SELECT 1"], ["status"], ["export"], ["import", "rollouts", "ROWS"]])
def test_a_db_that_is_not_a_duckdb_file_is_one_line(tmp_path, command):
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"problem_id": "p", "question": "1+1?", "gold_answer": "2", "response": "2"}) + "\n")
    result, _ = run_cli(*[str(rows) if a == "ROWS" else a for a in command], "--db", text, cwd=tmp_path)
    assert_subprocess_one_line_error(result, str(text), "not an rmforge store")
    assert "IO Error" not in result.stderr
    assert text.read_text() == "not a database\n"


def test_user_errors_from_below_the_cli_stay_one_line_with_debug(tmp_path):
    """--debug shows the traceback of a bug, not of a user error (here the store's, and an input
    file's raised below the API)."""
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    assert_one_line_error(invoke("--debug", "sql", "SELECT 1", "--db", text), "not an rmforge store")
    empty = tmp_path / "rows.jsonl"
    empty.write_text("")
    assert_one_line_error(
        invoke("--debug", "import", "rollouts", empty, "--db", tmp_path / "store.duckdb"), "holds no records"
    )


ROLLOUT_ROWS = [
    {"problem_id": f"p{i}", "question": f"{i}+1?", "gold_answer": str(i + 1), "response": f"{i + 1}"} for i in range(3)
]


@pytest.mark.parametrize(
    "command, rows, fragment",
    [
        # a rollouts JSONL given where ProcessBench is expected
        (["import", "processbench", "FILE"], ROLLOUT_ROWS, "3 records"),
        (["eval", "FILE", "--annotators", "answer"], ROLLOUT_ROWS, "3 records"),
        # a JSON of unrelated objects
        (["eval", "FILE", "--annotators", "answer"], [{"name": "a", "size": 1}, {"name": "b", "size": 2}], "2 records"),
        # rollouts whose every row is malformed
        (["import", "rollouts", "FILE"], [{"problem_id": "p", "answer": 1}, {"text": "x"}, {"id": 3}], "3 rows"),
    ],
)
def test_a_file_whose_every_row_is_quarantined_fails_saying_nothing_was_imported(
    prefect_api, tmp_path, command, rows, fragment
):
    path = tmp_path / ("rows.json" if "name" in rows[0] else "rows.jsonl")
    path.write_text(json.dumps(rows) if path.suffix == ".json" else "\n".join(json.dumps(r) for r in rows) + "\n")
    db = tmp_path / "store.duckdb"
    args = [str(path) if a == "FILE" else a for a in command]
    args += ["--out", tmp_path / "eval"] if command[0] == "eval" else ["--db", db]
    result, _ = run_cli(*args, cwd=tmp_path, prefect_api=prefect_api)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last and "quarantined" in last, last
    assert "nothing was imported" in last and "most common reason: " in last, last
    assert "Next:" not in result.stdout and "0.000" not in result.stdout, result.stdout


def test_dry_run_prints_the_effective_configuration_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("annotator_options: {mc: {k: 2}}\n")
    result = invoke(
        "run",
        "--dry-run",
        "--config",
        config,
        "--samples",
        "3",
        "--annotators",
        "answer,mc,z3_arith",
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "served",
    )
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["store"] == os.path.join("data", "rmforge.duckdb") and shown["export_dir"] is None
    assert shown["export"]["format"] == "standard"  # the config's export section
    assert shown["sampling"]["n"] == 3 and shown["sampling"]["temperature"] == 0.5  # flag, then the default
    assert shown["annotators"] == ["answer", "mc", "z3_arith"]
    mc = shown["annotator_options"]["mc"]
    assert mc["k"] == 2 and "significance" in mc  # the file's value beside every default it did not set
    assert mc["generator"]["base_url"] == "http://127.0.0.1:9/v1"  # unset: the pipeline's generator
    assert shown["annotator_options"]["answer"]["missing_answer"] == "unknown"
    assert not (tmp_path / "data").exists()
