"""Pushing an export to the Hub, against a local stand-in for it (tests/fake_hub.py): what arrives,
and every way a push fails is one line that leaves the local export as it was."""

from __future__ import annotations

import socket

import huggingface_hub.constants
import pytest
from huggingface_hub import DatasetCard

from rmforge.exports.files import CARD, CONFIG_FILE
from rmforge.schemas.config import ExportConfig
from rmforge.tasks.export import export_datasets
from rmforge.tasks.hub import HubError, push_export
from tests.fake_hub import FakeHub
from tests.tasks.test_export import assert_folder_is_this_export, folder_files
from tests.tasks.test_export_formats import build_trl_store

pytestmark = pytest.mark.slow  # pushes to a fake Hub server over HTTP (~1 s each)

PUSHED = {CARD, CONFIG_FILE, "process.parquet", "preference.parquet", "kto.parquet", "critiques.parquet"}


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    """The fake Hub as huggingface_hub's endpoint, with a token in HF_TOKEN and none saved."""
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with FakeHub() as fake:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", fake.url)
        yield fake


@pytest.fixture()
def exported(tmp_path, db):
    build_trl_store(db)
    out = tmp_path / "out"
    export_datasets.fn(
        db, str(out), run_id="export-1", settings=ExportConfig(format="conversational", push_to_hub="me/clips")
    )
    return out


def snapshot(out):
    return {name: (out / name).read_bytes() for name in folder_files(out)}


def test_push_commits_the_card_config_and_parquet_files_to_a_dataset_repo(hub, exported):
    url = push_export.fn(str(exported), "me/clips", private=True, timeout_s=10, run_id="export-1")

    repo = hub.repos["me/clips"]
    assert (repo["type"], repo["visibility"]) == ("dataset", "private")
    assert set(repo["files"]) == PUSHED  # not the JSONL files, hf/ folders or the manifest
    for name in PUSHED:
        assert repo["files"][name] == (exported / name).read_bytes(), name
    assert DatasetCard(repo["files"][CARD].decode()).data.configs[0]["config_name"] == "process"
    assert hub.commits == [{"repo": "me/clips", "summary": "rmforge export (run export-1)", "paths": sorted(PUSHED)}]
    assert url.startswith(f"{hub.url}/datasets/me/clips/commit/")
    assert set(hub.tokens) == {"Bearer hf_test_token"}


def test_a_second_push_updates_the_existing_repo(hub, exported):
    push_export.fn(str(exported), "me/clips")
    (exported / CARD).write_text((exported / CARD).read_text() + "\nMore words.\n")
    push_export.fn(str(exported), "me/clips")

    assert len(hub.commits) == 2  # the repo's 409 on create is "it exists", not a failure
    assert hub.repos["me/clips"]["files"][CARD].endswith(b"More words.\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("network down", "cannot reach http://127.0.0.1:"),
        ("create refused", "the Hub answered 403 Forbidden: You don't have the rights to create a dataset"),
        ("commit refused", "the Hub answered 403 Forbidden: refused"),
        ("no answer", "no answer from http://127.0.0.1:"),
    ],
)
def test_a_failed_push_is_one_line_and_leaves_the_export(hub, exported, monkeypatch, fault, reason):
    if fault == "network down":
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    elif fault == "no answer":
        hub.stall["create"] = 3
    else:
        hub.refuse[fault.split()[0]] = 403
    before = snapshot(exported)

    with pytest.raises(HubError) as error:
        push_export.fn(str(exported), "me/clips", timeout_s=1)

    message = str(error.value)
    assert message.startswith("cannot push to the Hub dataset me/clips: ") and reason in message
    assert message.endswith(f"(the export stays in {exported})") and "\n" not in message
    assert snapshot(exported) == before
    assert_folder_is_this_export(exported)


def test_no_token_is_refused_before_any_request(hub, exported, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match=r"^no Hugging Face token: set HF_TOKEN or run `hf auth login`$"):
        push_export.fn(str(exported), "me/clips")
    assert hub.calls == []


def test_a_malformed_repo_id_is_refused_before_any_request(hub, exported):
    with pytest.raises(HubError, match=r"^--push-to-hub: "):
        push_export.fn(str(exported), "me/clips/extra")
    assert hub.calls == []
