"""Fixtures for the review app: a built store, the real `rmforge review` process, Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.review.store_builder import build_review_store

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def rmforge(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI of this checkout in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "rmforge.cli", *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sql_json(db: str, query: str) -> list[dict]:
    result = rmforge("sql", query, "--db", db, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def review_store(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("review") / "review.duckdb")
    return db, build_review_store(db)


def start_review(db: str, *python_args: str, review_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """`rmforge review --reviewer alice *review_args` on a free port, run as `python
    *python_args` (the CLI module unless told); returns the process and its base URL (on
    127.0.0.1) once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            *(python_args or ("-m", "rmforge.cli")),
            "review",
            "--db",
            db,
            "--port",
            str(port),
            "--reviewer",
            "alice",
            *review_args,
        ],
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/static/review.css", timeout=1)
            return process, url
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"rmforge review did not start: {process.stdout.read()}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def review_server(review_store):
    """`rmforge review` as a user starts it; yields its base URL."""
    db, _ = review_store
    process, url = start_review(db)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed at /usr/bin/chromium "
            "(apt-get install chromium chromium-driver; .ci/run does this)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as playwright:
        # Playwright cannot download its own browsers here: drive Debian's.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
