"""rmforge installs as one package: a built wheel, in a fresh virtual environment and away from any
checkout, runs the pipeline and the review app, and leaves no generic top-level names behind."""

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.servers import ChatServer

pytestmark = pytest.mark.slow  # builds and installs the wheel

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_every_package_folder_of_the_checkout_is_in_the_wheel():
    folders = SETUPTOOLS["package-dir"]
    expected = set()
    for package, folder in folders.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            expected.add(".".join([package, *relative.parts]))
    assert expected <= set(SETUPTOOLS["packages"]), expected - set(SETUPTOOLS["packages"])
    assert all(name == "rmforge" or name.startswith("rmforge.") for name in SETUPTOOLS["packages"])


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A fresh virtual environment holding only the built (non-editable) wheel; the third-party
    dependencies come from the test's own environment through a path entry (installing them again
    would need the network), which adds no rmforge code: rmforge there is an editable finder, not
    a package on that path."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes its egg-info and build folders into the source tree.
    source = root / "source"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "data", "tests", "bench", "build", "*.egg-info", "__pycache__", ".pytest_cache"
        ),
    )
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RMFORGE_DB")}
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("rmforge-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env,
    )
    assert installed.returncode == 0, installed.stderr
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = root / "project"  # a user's folder: no checkout anywhere above it
    work.mkdir()
    return {
        "python": python,
        "rmforge": venv / "bin" / "rmforge",
        "site": Path(site),
        "cwd": work,
        "env": clean_env,
        "wheel": wheel,
    }


def run_in(wheel_env, *command, timeout=300, **env):
    return subprocess.run(
        [str(c) for c in command],
        cwd=wheel_env["cwd"],
        env={**wheel_env["env"], **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_wheel_holds_one_top_level_package(wheel_env):
    top_level = {
        p.name.split(".")[0]
        for p in wheel_env["site"].iterdir()
        if not p.name.endswith((".dist-info", ".pth"))
        and p.name not in ("_distutils_hack", "pip", "setuptools", "pkg_resources")
    }
    assert top_level == {"rmforge"}, top_level
    for generic in (
        "tasks",
        "flows",
        "store",
        "schemas",
        "problems",
        "generators",
        "verifiers",
        "annotators",
        "curation",
        "exports",
    ):
        result = run_in(wheel_env, wheel_env["python"], "-c", f"import {generic}")
        assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr, (generic, result.stderr)
    where = run_in(
        wheel_env,
        wheel_env["python"],
        "-c",
        "import rmforge.store, rmforge.verifiers.arithmetic; print(rmforge.store.__file__)",
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(wheel_env["site"] / "rmforge"), where.stdout


def test_the_installed_package_serves_the_shipped_deployments(wheel_env):
    listed = run_in(
        wheel_env,
        wheel_env["python"],
        "-c",
        "from rmforge.flows.deployments import served_deployments\n"
        "print(' '.join(sorted(d.name for d in served_deployments())))",
    )
    assert listed.returncode == 0, listed.stderr
    shipped = re.findall(r"^  - name: (\S+)", (REPO / "prefect.yaml").read_text(), re.M)
    assert listed.stdout.split() == sorted(shipped)


@pytest.fixture()
def model():
    server = ChatServer(lambda body, index: "Step 1: 2 + 3 = 5\nThe answer is \\boxed{5}")
    yield server
    server.close()


def test_the_installed_cli_runs_the_pipeline_and_the_review_app(wheel_env, model, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    config = wheel_env["cwd"] / "served.yaml"
    config.write_text(
        "problems: {kind: arithmetic, count: 2, max_steps: 1}\n"
        f"generator: {{backend: openai, model: served, base_url: '{model.url}'}}\n"
        "sampling: {n: 2, max_tokens: 32}\nannotators: [answer, z3_arith]\n"
    )
    ran = run_in(
        wheel_env,
        wheel_env["rmforge"],
        "run",
        "--config",
        config,
        "--export",
        "data/exports",
        PREFECT_API_URL=PREFECT_API_URL.value(),
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    store = wheel_env["cwd"] / "data" / "rmforge.duckdb"  # the default store, under the working directory
    assert store.is_file()
    assert (wheel_env["cwd"] / "data" / "exports" / "README.md").is_file()

    port = free_port()
    review = subprocess.Popen(
        [str(wheel_env["rmforge"]), "review", "--port", str(port)],
        cwd=wheel_env["cwd"],
        env=wheel_env["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        page = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and review.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5, follow_redirects=True)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert page is not None and page.status_code == 200, (page, review.poll())
        script = httpx.get(f"http://127.0.0.1:{port}/static/htmx.min.js", timeout=5)
        assert script.status_code == 200 and len(script.content) > 10_000
    finally:
        review.terminate()
        review.communicate(timeout=60)
