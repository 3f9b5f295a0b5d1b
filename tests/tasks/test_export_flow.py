"""The export flow on a store built by the real flows: a run row, the card from the curate run."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from rmforge.exports.files import CARD, ExportError
from rmforge.flows.annotate import annotate
from rmforge.flows.curate import curate
from rmforge.flows.export import export
from rmforge.flows.import_rollouts import import_rollouts
from rmforge.schemas.config import CurationConfig, ExportConfig
from rmforge.store import Store
from tests.flows.test_flows import write_rollouts

pytestmark = pytest.mark.slow  # the export flow


def test_export_flow_records_its_run_and_describes_the_curation(prefect_harness, tmp_path, db):
    write_rollouts(tmp_path / "rollouts.jsonl", n_problems=2)
    import_rollouts(str(tmp_path / "rollouts.jsonl"), db)
    annotate(db, ["answer", "z3_arith"])
    curate(db, ["answer", "z3_arith"], CurationConfig(near_dedupe=False))
    out = tmp_path / "exports"

    settings = ExportConfig(format="conversational", license="cc-by-4.0")
    stats = export(db, str(out), ["process", "kto"], settings)

    with Store(db, read_only=True) as store:
        run = store.rows("SELECT * FROM runs WHERE flow = 'export'")
    assert len(run) == 1 and run[0]["status"] == "completed" and run[0]["finished_at"] is not None
    assert json.loads(run[0]["config"]) == {
        "out_dir": str(out),
        "datasets": ["process", "kto"],
        "settings": settings.model_dump(),
    }
    assert json.loads(run[0]["summary"]) == stats
    # kto: the 4 verified outcomes left after exact dedupe of the copies; process: only the wrong
    # rollouts, whose first step z3_arith refutes (nothing confirms the right ones' steps)
    assert stats["process"]["rows"] == 2 and stats["kto"]["rows"] == 4
    card = (out / CARD).read_text()
    assert f"(export run `{run[0]['run_id']}`)" in card
    assert "Voting annotators of the latest curation: `answer`, `z3_arith`." in card
    assert "Consensus rule: `ranked`" in card
    assert "Outcome verdicts for `kto` come from: `answer`." in card
    kto = pq.read_table(out / "kto.parquet").to_pylist()
    assert sorted(r["label"] for r in kto) == [False, False, True, True]
    assert [message["role"] for message in kto[0]["prompt"]] == ["user"]  # imported rollouts: the question only
    assert "license: cc-by-4.0" in card


def test_export_flow_from_a_missing_database_fails_before_any_work(prefect_harness, tmp_path):
    missing = tmp_path / "missing.duckdb"
    with pytest.raises(ExportError, match="no rmforge database here"):
        export(str(missing), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_export_flow_from_a_missing_database_does_not_create_it(prefect_harness, tmp_path):
    missing = tmp_path / "missing.duckdb"
    with pytest.raises(ExportError):
        export(str(missing), str(tmp_path / "out"))
    assert not missing.exists()
