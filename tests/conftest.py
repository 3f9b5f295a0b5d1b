import os

# Tests are offline: fail fast instead of retrying a hub for 24 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
from hypothesis import settings

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


@pytest.fixture(scope="session", autouse=True)
def _shut_down_engines():
    """Stop any vLLM engine child processes before the interpreter exits."""
    yield
    from rmforge.generators import close_generators

    close_generators()
