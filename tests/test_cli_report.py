"""`rmforge report RUN`: the numbers of a curate or pipeline run as tables, and its chart."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rmforge.cli import app
from rmforge.store import Store
from tests.flows.test_flows import write_rollouts
from tests.tasks.test_run_report import human_labels_on_first_steps

pytestmark = pytest.mark.slow  # Prefect flows through the CLI


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def curated(prefect_harness, tmp_path_factory):
    """import -> annotate -> human labels -> `rmforge curate`, as a user would."""
    folder = tmp_path_factory.mktemp("report")
    db = str(folder / "store.duckdb")
    write_rollouts(folder / "rollouts.jsonl")
    assert invoke("import", "rollouts", folder / "rollouts.jsonl", "--db", db).exit_code == 0
    assert invoke("annotate", "--annotator", "answer,z3_arith", "--db", db).exit_code == 0
    human_labels_on_first_steps(db)
    result = invoke("curate", "--annotators", "answer,z3_arith", "--db", db)
    assert result.exit_code == 0, result.output
    run_prefix = re.search(r"report: (\S+\.png) \(rmforge report (\w+)\)", result.stdout).group(2)
    return db, run_prefix


def test_report_last_prints_the_tables_and_the_chart(curated):
    db, run_prefix = curated
    result = invoke("report", "last", "--db", db)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Annotator agreement on steps both decided" in out
    row = next(line for line in out.splitlines() if "human / z3_arith" in line)
    assert re.search(r"12\s.*100\.0%\s.*1\.000", row), row  # 12 steps, all agreed, kappa 1
    assert "step: z3_arith (refute-only)" in out and "consensus: steps" in out
    assert "Seconds per stage" in out and "curate" in out
    chart = Path(re.search(r"Chart: (\S+\.png)$", out, re.MULTILINE).group(1))
    assert chart.is_file() and chart.name.startswith(run_prefix) and chart.parent == Path(db).parent / "reports"


def test_report_by_prefix_regenerates_a_missing_chart_from_the_stored_numbers(curated):
    db, run_prefix = curated
    numbers = json.loads(invoke("report", run_prefix, "--db", db, "--json").stdout)
    chart = Path(numbers["chart"])
    chart.unlink()
    result = invoke("report", run_prefix, "--db", db)
    assert result.exit_code == 0 and f"Chart: {chart} (regenerated)" in result.stdout
    assert chart.stat().st_size > 10_000


def test_runs_without_a_report_and_unknown_runs_are_one_line_errors(curated):
    db, _ = curated
    with Store(db, read_only=True) as store:
        import_run = store.rows("SELECT run_id FROM runs WHERE flow = 'import-rollouts'")[0]["run_id"]
    for run, fragment in ((import_run, "has no report"), ("no-such-run", "no run 'no-such-run'")):
        result = invoke("report", run, "--db", db)
        assert result.exit_code == 1 and result.stdout == "", result.output
        assert result.stderr.count("\n") == 1 and fragment in result.stderr and "Traceback" not in result.stderr


def test_report_on_a_store_without_runs(tmp_path):
    db = tmp_path / "empty.duckdb"
    Store(db).close()
    result = invoke("report", "last", "--db", db)
    assert result.exit_code == 1 and result.stderr.startswith("error: no completed curate or pipeline run in")
    missing = invoke("report", "last", "--db", tmp_path / "missing.duckdb")
    assert missing.exit_code == 1 and "no rmforge database" in missing.stderr
