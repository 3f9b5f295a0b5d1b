"""Exports: typed files of every format, a card that tells the truth, a folder the export owns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from rmforge.exports.files import CARD, CONFIG_FILE, MANIFEST, ExportError
from rmforge.schemas.config import CurationConfig
from rmforge.schemas.exports import EXPORTS
from rmforge.schemas.records import (
    Critique,
    OutcomeConsensus,
    OutcomeLabel,
    PreferencePair,
    ProcessExample,
    RunRecord,
    canonical_json,
    utc_now,
)
from rmforge.store import Store
from rmforge.tasks.consensus import compute_consensus
from rmforge.tasks.export import export_datasets
from tests.builders import make_problem, make_rollout

CURATION = {
    "annotators": ["answer", "z3_arith", "mc"],
    "curation": {"consensus": "unanimous", "required_annotators": ["z3_arith"], "near_dedupe": False},
}


def outcome(rollout, annotator: str, verdict: str, minutes_ago: int = 0) -> OutcomeLabel:
    return OutcomeLabel(
        rollout_id=rollout.rollout_id,
        annotator=annotator,
        annotator_version="1",
        config_hash=f"{annotator}-{minutes_ago}",
        verdict=verdict,
        run_id="test-run",
        labeled_at=utc_now() - timedelta(minutes=minutes_ago),
    )


def build_store(db: str, n_problems: int = 3, *, tag: str = "a", padding: int = 0) -> dict[str, int]:
    """A curated store: per problem a right and a wrong rollout, each with every dataset row.

    Returns the rows each dataset should export.
    """
    pad = " " + "x" * padding if padding else ""
    problems, rollouts, outcomes, decided, examples, pairs, critiques = [], [], [], [], [], [], []
    for i in range(n_problems):
        problem = make_problem(f"{tag}{i}: what is {i} + {i}?", str(2 * i))
        right = make_rollout(problem, f"Step 1: {i} + {i} = {2 * i}.{pad}\nThe answer is {2 * i}.")
        wrong = make_rollout(problem, f"Step 1: {i} + {i} = {2 * i + 1}.{pad}\nThe answer is {2 * i + 1}.")
        problems.append(problem)
        rollouts += [right, wrong]
        outcomes += [outcome(right, "answer", "correct"), outcome(wrong, "answer", "incorrect")]
        decided += [
            OutcomeConsensus(rollout_id=r.rollout_id, verdict=v, supporters=["answer"], run_id="test-run")
            for r, v in ((right, "correct"), (wrong, "incorrect"))
        ]
        # the right rollout's last label rests only on its own outcome (mc's final step)
        for rollout, labels, soft, implied in (
            (right, [True, True], [0.75, 1.0], [False, True]),
            (wrong, [False], [0.0], [False]),
        ):
            examples.append(
                ProcessExample(
                    example_id=f"ex-{rollout.rollout_id}",
                    rollout_id=rollout.rollout_id,
                    problem_id=problem.problem_id,
                    prompt=problem.question,
                    completions=rollout.response.split("\n")[: len(labels)],
                    labels=labels,
                    soft_labels=soft,
                    annotators=["mc", "z3_arith"],
                    outcome_implied=implied,
                    run_id="test-run",
                )
            )
        pairs.append(
            PreferencePair(
                pair_id=f"pair-{i}",
                problem_id=problem.problem_id,
                prompt=problem.question,
                chosen=right.response,
                rejected=wrong.response,
                chosen_rollout_id=right.rollout_id,
                rejected_rollout_id=wrong.rollout_id,
                run_id="test-run",
            )
        )
        critiques.append(
            Critique(
                critique_id=f"crit-{i}",
                rollout_id=wrong.rollout_id,
                annotator="judge",
                model="judge-model",
                sample_index=0,
                first_error_step=0,
                verdict="incorrect",
                text="Step 1 adds wrongly.",
                run_id="test-run",
            )
        )
    with Store(db) as store:
        store.write("problems", problems)
        store.write("rollouts", rollouts)
        store.write("outcome_labels", outcomes)
        store.write("outcome_consensus", decided)
        store.write("process_examples", examples)
        store.write("preference_pairs", pairs)
        store.write("critiques", critiques)
        store.write(
            "runs", [RunRecord(run_id="curate-1", flow="curate", config=canonical_json(CURATION), status="completed")]
        )
    return {"process": 2 * n_problems, "preference": n_problems, "kto": 2 * n_problems, "critiques": n_problems}


def empty_store(db: str) -> None:
    with Store(db):
        pass


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def front_matter(card: str) -> dict:
    if not card.startswith("---\n"):
        return {}
    return yaml.safe_load(card.split("---\n")[1])


def folder_files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- formats and types


def test_every_file_has_the_export_schema_and_the_rows(tmp_path, db):
    expected = build_store(db)
    out = tmp_path / "out"
    stats = export_datasets.fn(db, str(out))

    assert {name: s["rows"] for name, s in stats.items()} == expected
    for name, spec in EXPORTS.items():
        parquet = pq.read_table(out / f"{name}.parquet")
        assert parquet.schema.remove_metadata().equals(spec.schema), name
        assert parquet.num_rows == expected[name]
        rows = read_jsonl(out / f"{name}.jsonl")
        assert rows == parquet.to_pylist(), name
        saved = datasets.load_from_disk(str(out / "hf" / name))
        assert saved.data.table.schema.remove_metadata().equals(spec.schema), name
        assert saved.num_rows == expected[name]

    process = pq.read_table(out / "process.parquet")
    assert process.schema.field("labels").type == pa.list_(pa.bool_())
    assert process.schema.field("soft_labels").type == pa.list_(pa.float64())
    by_labels = {tuple(r["labels"]): r["soft_labels"] for r in process.to_pylist()}
    assert by_labels == {(True, True): [0.75, 1.0], (False,): [0.0]}
    # Read as JSON (no schema given), soft labels are still floats, not nulls.
    from_json = datasets.Dataset.from_json(str(out / "process.jsonl"), cache_dir=str(tmp_path / "cache"))
    assert from_json.features["soft_labels"].feature.dtype == "float64"
    preference = read_jsonl(out / "preference.jsonl")[0]
    assert list(preference)[:3] == ["prompt", "chosen", "rejected"]
    kto = pq.read_table(out / "kto.parquet").to_pylist()
    assert sorted(r["label"] for r in kto) == [False] * 3 + [True] * 3


def test_a_lake_exports_like_a_file(tmp_path, lake_db):
    expected = build_store(lake_db)
    out = tmp_path / "out"

    stats = export_datasets.fn(lake_db, str(out))

    assert {name: s["rows"] for name, s in stats.items()} == expected
    card = (out / CARD).read_text()
    assert "database `ducklake:catalog.ducklake`" in card and str(tmp_path) not in card  # a name, no paths


def test_empty_datasets_export_as_empty_loadable_datasets(tmp_path, db):
    empty_store(db)
    out = tmp_path / "out"
    stats = export_datasets.fn(db, str(out))

    assert {s["rows"] for s in stats.values()} == {0}
    for name, spec in EXPORTS.items():
        parquet = pq.read_table(out / f"{name}.parquet")
        assert parquet.num_rows == 0 and parquet.schema.remove_metadata().equals(spec.schema)
        assert (out / f"{name}.jsonl").read_bytes() == b""
        saved = datasets.load_from_disk(str(out / "hf" / name))
        assert saved.num_rows == 0 and saved.column_names == spec.schema.names
    card = (out / CARD).read_text()
    assert "configs" not in front_matter(card)  # datasets cannot load a split with no rows: no config offers one
    assert "Empty: process, preference, kto, critiques." in card


def test_load_dataset_reads_each_config_offline(tmp_path, db, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    expected = build_store(db)
    with Store(db) as store:
        store.execute("DELETE FROM critiques")
    out = tmp_path / "out"
    export_datasets.fn(db, str(out))

    configs = front_matter((out / CARD).read_text())["configs"]
    assert [c["config_name"] for c in configs] == ["process", "preference", "kto"]  # critiques is empty
    assert [c for c in configs if c.get("default")] == [configs[0]]
    cache = str(tmp_path / "hf-cache")
    for name in ("process", "preference", "kto"):
        loaded = datasets.load_dataset(str(out), name, split="train", cache_dir=cache)
        assert loaded.to_list() == pq.read_table(out / f"{name}.parquet").to_pylist()
        assert loaded.num_rows == expected[name]
    default = datasets.load_dataset(str(out), split="train", cache_dir=cache)
    assert default.column_names == EXPORTS["process"].schema.names


# ---------------------------------------------------------------- outcome verdicts for kto


def test_kto_takes_the_outcome_consensus(tmp_path, db):
    problem = make_problem()
    rollouts = [make_rollout(problem, f"The answer is {i}.", index=i) for i in range(5)]
    r0, r1, r2, r3, r4 = rollouts
    labels = [
        outcome(r0, "answer", "correct"),
        outcome(r0, "judge", "incorrect"),  # verifier beats model
        outcome(r1, "judge", "correct"),  # the only verdict
        outcome(r2, "answer", "correct"),
        outcome(r2, "human", "incorrect"),  # human beats verifier
        outcome(r3, "answer", "unknown"),
        outcome(r3, "judge", "incorrect"),  # unknown abstains
        outcome(r4, "answer", "correct", minutes_ago=5),  # newest label counts
        outcome(r4, "answer", "incorrect", minutes_ago=1),
        outcome(r4, "retired_checker", "correct"),  # not an annotator: ignored
    ]
    with Store(db) as store:
        store.write("problems", [problem])
        store.write("rollouts", rollouts)
        store.write("outcome_labels", labels)
    compute_consensus.fn(db, ["answer", "judge"], CurationConfig(), "curate-run")  # human labels always vote
    out = tmp_path / "out"
    export_datasets.fn(db, str(out), ["kto"])

    got = {row["rollout_id"]: row["label"] for row in pq.read_table(out / "kto.parquet").to_pylist()}
    assert got == {
        r0.rollout_id: True,
        r1.rollout_id: True,
        r2.rollout_id: False,
        r3.rollout_id: False,
        r4.rollout_id: False,
    }
    card = (out / CARD).read_text()
    assert "Outcome verdicts for `kto` come from: `answer`, `human`, `judge`." in card
    assert "retired_checker" not in card


# ---------------------------------------------------------------- the card


def test_card_states_provenance_rule_meaning_and_counts_without_paths(tmp_path, db):
    build_store(db)
    out = tmp_path / "out"
    stats = export_datasets.fn(db, str(out), run_id="run-42")
    card = (out / CARD).read_text()

    assert str(tmp_path) not in card and "/tmp" not in card
    assert "database `test.duckdb` (export run `run-42`)" in card
    assert "Voting annotators of the latest curation: `answer`, `z3_arith`, `mc`." in card
    assert "Consensus rule: `unanimous`" in card and "required annotators: `z3_arith`" in card
    assert "near-duplicate off" in card
    assert "`labels[i]` is true when the consensus found step *i* correct" in card
    assert "| `z3_arith` | no | yes | no | verifier | indicator |" in card  # refute-only, from its Evidence
    assert "| `mc` | yes | yes | no | model | probability |" in card
    assert "Critiques by: `judge` (judge-model: 3)." in card
    assert f"- **process**: {json.dumps(stats['process'])}" in card
    assert stats["process"] == {
        "rows": 6,
        "problems": 3,
        "steps": 9,
        "positive_step_fraction": 0.6667,
        "mean_steps_per_example": 1.5,
        "examples_ending_in_error": 3,
        "fractional_soft_labels": 3,
        "outcome_implied_labels": 3,
    }
    assert "`outcome_implied[i]` is true when label *i* rests only on the rollout's own correct" in card
    assert "Labels resting only on a rollout's own correct outcome voted (`direct_step_evidence` off)" in card
    assert stats["kto"]["desirable_fraction"] == 0.5
    assert stats["critiques"]["verdicts"] == {"incorrect": 3}


def test_the_cards_code_passes_the_projects_formatter(tmp_path, db):
    """An export inside a checkout (data/...) must not fail `make lint`: ruff formats Markdown's code."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is in the lint extra")
    build_store(db)
    out = tmp_path / "out"
    export_datasets.fn(db, str(out), run_id="run-42")
    checked = subprocess.run(
        [str(ruff), "format", "--check", "--no-cache", str(out / CARD)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_card_reads_a_curate_run_recorded_under_other_settings(tmp_path, db):
    build_store(db)
    recorded = {"annotators": ["answer"], "curation": {"consensus": "majority_of_old", "retired_option": 1}}
    with Store(db) as store:
        store.write(
            "runs",
            [
                RunRecord(
                    run_id="curate-0",
                    flow="curate",
                    config=canonical_json(recorded),
                    status="completed",
                    started_at=utc_now() + timedelta(minutes=1),
                )
            ],
        )
    out = tmp_path / "out"
    export_datasets.fn(db, str(out))
    card = (out / CARD).read_text()
    assert "Voting annotators of the latest curation: `answer`." in card
    assert "Consensus rule: `majority_of_old`" in card and "near-duplicate on (cosine >= 0.95)" in card


def test_card_without_a_curate_run_says_so(tmp_path, db):
    build_store(db)
    with Store(db) as store:
        store.execute("DELETE FROM runs")
    out = tmp_path / "out"
    export_datasets.fn(db, str(out))
    assert "No curate run is recorded in the database." in (out / CARD).read_text()


# ---------------------------------------------------------------- the folder the export owns


def assert_folder_is_this_export(out: Path, ignore: str | None = None) -> dict:
    """Every file present is listed in a complete manifest with its sha256, and nothing else is there.

    ignore: a name prefix to leave out (the temporary folder a killed export leaves).
    """
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "complete"
    present = {f for f in folder_files(out) if not (ignore and f.startswith(ignore))}
    assert present == set(manifest["files"]) | {MANIFEST}
    import hashlib

    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"], name
    return manifest


def test_subset_reexport_removes_the_other_datasets(tmp_path, db):
    build_store(db)
    out = tmp_path / "out"
    export_datasets.fn(db, str(out))
    export_datasets.fn(db, str(out), ["process"])

    manifest = assert_folder_is_this_export(out)
    assert list(manifest["datasets"]) == ["process"]
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "hf",
        "process.jsonl",
        "process.parquet",
        MANIFEST,
        CONFIG_FILE,
    ]
    assert [p.name for p in (out / "hf").iterdir()] == ["process"]
    assert [c["config_name"] for c in front_matter((out / CARD).read_text())["configs"]] == ["process"]


def test_reexport_from_another_database_leaves_nothing_of_the_first(tmp_path):
    first, second = str(tmp_path / "first.duckdb"), str(tmp_path / "second.duckdb")
    build_store(first, 5, tag="first")
    expected = build_store(second, 1, tag="second")
    out = tmp_path / "out"
    export_datasets.fn(first, str(out))
    export_datasets.fn(second, str(out))

    manifest = assert_folder_is_this_export(out)
    assert manifest["database"] == "second.duckdb"
    card = (out / CARD).read_text()
    assert "first.duckdb" not in card
    for name, rows in expected.items():
        assert pq.read_table(out / f"{name}.parquet").num_rows == rows
        assert len(read_jsonl(out / f"{name}.jsonl")) == rows
        assert datasets.load_from_disk(str(out / "hf" / name)).num_rows == rows
        assert manifest["datasets"][name]["rows"] == rows
        assert f"| {name} | {EXPORTS[name].format} | {rows} |" in card
    prompts = pq.read_table(out / "process.parquet").column("prompt").to_pylist()
    assert all(p.startswith("second") for p in prompts)


def test_folder_with_other_files_is_refused_and_left_alone(tmp_path, db):
    build_store(db)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=f"{out}: is not empty and holds no rmforge export"):
        export_datasets.fn(db, str(out))
    assert folder_files(out) == {"notes.txt"}

    (out / "notes.txt").unlink()
    export_datasets.fn(db, str(out))
    before = folder_files(out)
    (out / "hf" / "mine").mkdir()
    with pytest.raises(ExportError, match="hf/mine: was not written by rmforge export"):
        export_datasets.fn(db, str(out))
    assert folder_files(out) == before


def test_export_made_before_the_manifest_is_replaced(tmp_path, db):
    build_store(db)
    out = tmp_path / "out"
    (out / "hf" / "process").mkdir(parents=True)
    (out / "hf" / "process" / "state.json").write_text("{}")
    (out / CARD).write_text("# rmforge export\n\nBuilt from `/abs/old.duckdb`.\n")
    (out / "kto.parquet").write_bytes(b"")  # cut by a kill of the old exporter
    export_datasets.fn(db, str(out), ["process", "kto"])
    assert_folder_is_this_export(out)
    assert pq.read_table(out / "kto.parquet").num_rows == 6


@pytest.mark.parametrize("case", ["missing db", "unknown dataset", "out is a file", "out under a file"])
def test_bad_export_requests_fail_with_the_path(tmp_path, db, case):
    build_store(db)
    (tmp_path / "file.txt").write_text("x")
    db_arg, out, names, message = {
        "missing db": (
            str(tmp_path / "none.duckdb"),
            tmp_path / "out",
            None,
            f"{tmp_path / 'none.duckdb'}: no rmforge database here",
        ),
        "unknown dataset": (db, tmp_path / "out", ["process", "bogus"], "unknown dataset 'bogus'; known: process"),
        "out is a file": (db, tmp_path / "file.txt", None, f"{tmp_path / 'file.txt'}: is a file"),
        "out under a file": (
            db,
            tmp_path / "file.txt" / "out",
            None,
            f"{tmp_path / 'file.txt' / 'out'}: cannot write the export: Not a directory",
        ),
    }[case]
    with pytest.raises(ExportError) as error:
        export_datasets.fn(db_arg, str(out), names)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "none.duckdb").exists() and not (tmp_path / "out").exists()


def test_a_second_export_into_a_busy_folder_is_refused(tmp_path, db):
    import fcntl

    build_store(db)
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running export holds
        with pytest.raises(ExportError, match="another export is writing to this folder"):
            export_datasets.fn(db, str(out))
    finally:
        os.close(fd)
    export_datasets.fn(db, str(out))
    assert_folder_is_this_export(out)


def test_critiques_export_only_the_judges_replies_to_its_request(tmp_path, db):
    """`code_check`'s critiques (its programs and their output) answer no single request: they stay
    in the store, out of the `critiques` dataset and its card line."""
    build_store(db)
    with Store(db) as store:
        judged = store.rows("SELECT rollout_id FROM critiques")
        store.write(
            "critiques",
            [
                Critique(
                    critique_id=f"code-{row['rollout_id']}",
                    rollout_id=row["rollout_id"],
                    annotator="code_check",
                    model="coder",
                    sample_index=0,
                    first_error_step=0,
                    verdict="incorrect",
                    text="## Step 0: incorrect\nVERDICT: incorrect\n--- program ---\nprint(...)",
                    run_id="test-run",
                )
                for row in judged
            ],
        )
    out = tmp_path / "out"
    stats = export_datasets.fn(db, str(out), names=["critiques"], run_id="run-42")
    assert stats["critiques"]["rows"] == len(judged) == 3
    assert "--- program ---" not in (out / "critiques.parquet").read_bytes().decode("latin-1")
    assert "Critiques by: `judge` (judge-model: 3)." in (out / CARD).read_text()
