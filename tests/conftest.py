import atexit
import os
import shutil
import tempfile

# Tests are offline: fail fast instead of retrying a hub for 24 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Commands under test run on the test's Prefect server or a temporary one of their own, never on
# a background server they would leave running (tests of the shared server opt in), and never on
# the user's (~/.rmforge).
os.environ["RMFORGE_SHARED_SERVER"] = "0"
os.environ["RMFORGE_STATE_DIR"] = tempfile.mkdtemp(prefix="rmforge-test-state-")

import pytest
from hypothesis import settings

atexit.register(shutil.rmtree, os.environ["RMFORGE_STATE_DIR"], ignore_errors=True)

# CI draws the same examples on every run, so a submission lands or fails on its own merits,
# not on which random inputs came up; local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture()
def db(tmp_path):
    return str(tmp_path / "test.duckdb")


@pytest.fixture()
def lake_db(tmp_path):
    """A DuckLake store with its catalog in a local DuckDB file: a lake without a PostgreSQL server."""
    return f"ducklake:{tmp_path / 'catalog.ducklake'};data={tmp_path / 'lake'}/"


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture()
def prefect_api(prefect_harness):
    """The session's Prefect server's API URL, for CLI subprocesses: it outlives a killed command,
    as a user's server would."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def tiny_prm(tmp_path_factory):
    """A tiny random process reward model folder (tests/tiny_prm.py), built once per session."""
    from tests.tiny_prm import build_tiny_prm

    return build_tiny_prm(tmp_path_factory.mktemp("tiny-prm"))


@pytest.fixture(scope="session", autouse=True)
def _shut_down_engines():
    """Stop any vLLM engine child processes before the interpreter exits."""
    yield
    from rmforge.generators import close_generators

    close_generators()


# ------------------------------------------------------------------ unit and slow
# Every test is either `unit` (the `make test-fast` loop, `pytest -m unit`) or `slow`: `slow` when
# it is marked so, or `integration` (vLLM) or `lean` (a real Lean), or uses one of SLOW_FIXTURES.
# Mark a module `pytestmark = pytest.mark.slow` (or one test `@pytest.mark.slow`) when it starts
# a CLI subprocess, a server, a browser, vLLM, a wheel build or a model, or takes over ~1 s;
# the run's summary names any `unit` test that took longer than UNIT_BUDGET_S.
SLOW_FIXTURES = frozenset(
    {
        "prefect_harness",  # a Prefect server, for flows
        "review_server",
        "browser",  # `rmforge review` in a process; Chromium
        "postgres",  # a PostgreSQL cluster for DuckLake
        "tiny_prm",  # torch and transformers build a reward model
    }
)
SLOW_MARKERS = ("slow", "integration", "lean")
UNIT_BUDGET_S = 2.0


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_MARKERS) or SLOW_FIXTURES.intersection(item.fixturenames):
            if not item.get_closest_marker("slow"):
                item.add_marker(pytest.mark.slow)
        else:
            item.add_marker(pytest.mark.unit)


_unit_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if "unit" in report.keywords:
        _unit_seconds[report.nodeid] = _unit_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    over = sorted(((s, n) for n, s in _unit_seconds.items() if s > UNIT_BUDGET_S), reverse=True)
    if over:
        terminalreporter.section(f"unit tests over {UNIT_BUDGET_S:.0f} s: mark them slow or make them faster")
        for seconds, nodeid in over:
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")
