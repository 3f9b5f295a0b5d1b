"""`rmforge export --format ... --push-to-hub REPO` as a user runs it: the Hub is the local stand-in
named by HF_ENDPOINT (tests/fake_hub.py); failures are one line on stderr and leave the export."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from rmforge.exports.files import CARD, CONFIG_FILE, MANIFEST
from tests.fake_hub import FakeHub
from tests.tasks.test_export import assert_folder_is_this_export
from tests.tasks.test_export_formats import build_trl_store
from tests.test_cli import assert_one_line_error, assert_subprocess_one_line_error, invoke, run_cli, runs_in

pytestmark = pytest.mark.slow  # Prefect flows through the CLI, a fake Hub server


@pytest.fixture()
def trl_db(db):
    build_trl_store(db)
    return db


def hub_env(hub, tmp_path, token="hf_cli_token"):
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": token}
    return {name: value for name, value in env.items() if value is not None}


def test_export_conversational_and_push_to_the_hub(prefect_api, trl_db, tmp_path):
    out = tmp_path / "out"
    with FakeHub() as hub:
        result, _ = run_cli(
            "export",
            "--db",
            trl_db,
            "--out",
            out,
            "--format",
            "conversational",
            "--push-to-hub",
            "me/clips",
            "--private",
            cwd=tmp_path,
            prefect_api=prefect_api,
            env_vars=hub_env(hub, tmp_path),
        )
    assert result.returncode == 0, result.stderr
    assert "Pushed to the Hub: me/clips (" in result.stdout
    repo = hub.repos["me/clips"]
    assert repo["visibility"] == "private"
    assert set(repo["files"]) == {CARD, CONFIG_FILE} | {
        f"{n}.parquet" for n in ("process", "preference", "kto", "critiques")
    }
    for name, content in repo["files"].items():
        assert content == (out / name).read_bytes(), name
    assert pq.read_table(out / "kto.parquet").schema.field("prompt").type.value_type.names == ["role", "content"]
    assert 'datasets.load_dataset("me/clips", "process")' in (out / CARD).read_text()


def test_a_refused_push_is_one_line_and_the_export_stays(prefect_api, trl_db, tmp_path):
    out = tmp_path / "out"
    with FakeHub() as hub:
        hub.refuse["commit"] = 403
        result, _ = run_cli(
            "export",
            "--db",
            trl_db,
            "--out",
            out,
            "--push-to-hub",
            "me/clips",
            cwd=tmp_path,
            prefect_api=prefect_api,
            env_vars=hub_env(hub, tmp_path),
        )
    assert_subprocess_one_line_error(
        result, "cannot push to the Hub dataset me/clips: the Hub answered 403", f"(the export stays in {out})"
    )
    assert_folder_is_this_export(out)
    assert json.loads((out / MANIFEST).read_text())["datasets"]["process"]["rows"] == 4


def test_push_without_a_token_is_refused_before_any_work(trl_db, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    out = tmp_path / "out"
    result = invoke("export", "--db", trl_db, "--out", out, "--push-to-hub", "me/clips")
    assert_one_line_error(result, "no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    assert not out.exists() and runs_in(trl_db) == 4  # the store's own runs, no export run


def test_export_options_are_checked(trl_db, tmp_path):
    assert_one_line_error(invoke("export", "--db", trl_db, "--private"), "--private: only with --push-to-hub")
    assert_one_line_error(invoke("export", "--db", trl_db, "--format", "chatml"), "'chatml' is not one of", code=2)
    assert_one_line_error(invoke("export", "--db", trl_db, "--push-to-hub", "a/b/c"), "--push-to-hub: ")
