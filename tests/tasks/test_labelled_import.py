"""Human-labelled data: ProcessBench and PRM800K imports keep steps exactly and store `human` labels."""

import json
from pathlib import Path

import pytest

from rmforge.problems.labelled_import import (
    LabelledRecord,
    first_error_verdicts,
    parse_labelled_rows,
    processbench_record,
)
from rmforge.problems.records import read_records
from rmforge.store import Store
from rmforge.tasks.rollouts import import_labelled, import_rollouts

PROCESSBENCH = next(
    (
        p / "shared" / "data" / "processbench" / "gsm8k.json"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "data" / "processbench").is_dir()
    ),
    None,
)
needs_processbench = pytest.mark.skipif(
    PROCESSBENCH is None, reason="../shared/data/processbench is not beside the repo"
)


@pytest.mark.slow  # imports ProcessBench GSM8K
@needs_processbench
def test_processbench_import_keeps_every_step_and_the_human_first_error(db):
    records = json.loads(PROCESSBENCH.read_text())
    summary = import_labelled.fn(db, str(PROCESSBENCH), "processbench", "run")
    assert summary["rollouts"] == len(records) == 400 and summary["quarantined"] == 0
    assert summary["gold_answers"] == summary["problems"]  # gsm8k_gold_answers.json beside it was found
    with Store(db) as store:
        steps: dict[str, list[str]] = {}
        for row in store.rows("SELECT rollout_id, text FROM steps ORDER BY rollout_id, step_index"):
            steps.setdefault(row["rollout_id"], []).append(row["text"])
        firsts = {
            r["rollout_id"]: r["first"]
            for r in store.rows(
                "SELECT rollout_id, min(step_index) FILTER (verdict = 'incorrect') AS first FROM step_labels "
                "WHERE annotator = 'human' GROUP BY rollout_id"
            )
        }
        outcomes = {
            r["rollout_id"]: r["verdict"]
            for r in store.rows("SELECT rollout_id, verdict FROM outcome_labels WHERE annotator = 'human'")
        }
        models = {r["model"] for r in store.rows("SELECT DISTINCT model FROM step_labels WHERE annotator = 'human'")}
    for record in records:
        assert steps[record["id"]] == record["steps"]
        assert firsts[record["id"]] == (None if record["label"] == -1 else record["label"])
        assert outcomes[record["id"]] == ("correct" if record["final_answer_correct"] else "incorrect")
    assert models == {"processbench"}


@needs_processbench
def test_import_rollouts_with_a_steps_list_stores_processbench_steps_exactly(tmp_path, db):
    records = json.loads(PROCESSBENCH.read_text())[:50]
    rows = [
        {"problem_id": r["id"], "question": r["problem"], "steps": r["steps"], "model": r["generator"]} for r in records
    ]
    path = tmp_path / "steps.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert import_rollouts.fn(db, str(path), "run")["rollouts"] == 50
    with Store(db) as store:
        stored = {}
        for row in store.rows(
            "SELECT r.problem_id, s.text FROM steps s JOIN rollouts r USING (rollout_id) "
            "ORDER BY r.problem_id, s.step_index"
        ):
            stored.setdefault(row["problem_id"], []).append(row["text"])
    assert stored == {r["id"]: r["steps"] for r in records}


def test_processbench_labels_are_validated():
    rows = [
        {"id": "a", "problem": "Q?", "steps": ["s0", "s1"], "label": 2, "final_answer_correct": True},
        {"id": "b", "problem": "Q?", "steps": ["s0"], "label": "0"},
        {"id": "c", "problem": "Q?", "steps": [], "label": -1},
        {"id": "d", "problem": "Q?", "steps": ["s0", "s1"], "label": -1, "final_answer_correct": "yes"},
        {"id": "e", "problem": "Q?", "steps": ["s0", "s1"], "label": 1, "final_answer_correct": False},
    ]
    parsed = parse_labelled_rows(rows, "pb", "run", "processbench", gold={"e": "7"})
    assert [r.rollout_id for r in parsed.rollouts] == ["e"]
    assert {q.field for q in parsed.quarantine} == {"label", "steps", "final_answer_correct"}
    assert parsed.step_verdicts["e"] == ["correct", "incorrect"] and parsed.outcomes["e"] is False
    assert parsed.problems[0].gold_answer == "7"
    assert first_error_verdicts(-1, 3) == ["correct"] * 3


def test_a_labelled_record_names_what_it_holds():
    record = {
        "id": "a",
        "problem": "Q?",
        "steps": ["s0", "s1"],
        "label": 1,
        "generator": "m",
        "final_answer_correct": False,
    }
    read = processbench_record(record, {"a": "7"}, "run")
    assert isinstance(read, LabelledRecord)
    assert (read.rollout.rollout_id, read.problem.gold_answer, [s.text for s in read.steps]) == ("a", "7", ["s0", "s1"])
    assert (read.verdicts, read.final_answer_correct, read.reviewer) == (
        ["correct", "incorrect"],
        False,
        "processbench",
    )


PRM800K = {
    "labeler": "L1",
    "timestamp": "2022-07-01T00:00:00",
    "question": {"problem": "What is 2 + 3 * 4?", "ground_truth_answer": "14"},
    "label": {
        "steps": [
            {"completions": [{"text": "3 * 4 = 12.", "rating": 1}], "chosen_completion": 0},
            {
                "completions": [{"text": "2 + 12 = 15.", "rating": -1}, {"text": "2 + 12 = 14.", "rating": 1}],
                "chosen_completion": None,
            },
            {"completions": [{"text": "So 15.", "rating": 1}], "chosen_completion": 0},
        ],
        "finish_reason": "found_error",
    },
}


@pytest.mark.parametrize("neutral", ["correct", "unknown"])
def test_prm800k_ratings_become_human_verdicts_up_to_the_first_wrong_step(tmp_path, db, neutral):
    record = json.loads(json.dumps(PRM800K))
    record["label"]["steps"][0]["completions"][0]["rating"] = 0  # a neutral first step
    path = tmp_path / "prm.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({"question": "not an object"}) + "\n")
    parsed = parse_labelled_rows(read_records(path), "prm", "run", "prm800k", neutral=neutral)
    assert len(parsed.rollouts) == 1 and parsed.quarantine[0].field == "question"
    rid = parsed.rollouts[0].rollout_id
    assert parsed.step_verdicts[rid] == [neutral, "incorrect"]  # the third step follows an error: unlabelled
    assert [s.text for s in parsed.steps] == ["3 * 4 = 12.", "2 + 12 = 15.", "So 15."]
    assert parsed.reviewers[rid] == "L1" and parsed.problems[0].gold_answer == "14"
    summary = import_labelled.fn(db, str(path), "prm800k", "run", neutral=neutral)
    assert summary["human_step_labels"] == 2 and summary["human_outcome_labels"] == 0


def test_a_repeated_processbench_id_is_quarantined_unless_identical(tmp_path, db):
    record = {
        "id": "gsm8k-1",
        "generator": "m",
        "problem": "What is 3 + 4?",
        "steps": ["3 + 4 = 8.", "So 8."],
        "label": 0,
        "final_answer_correct": False,
    }
    other = {**record, "steps": ["3 + 4 = 7.", "So 7."], "label": -1, "final_answer_correct": True}
    path = tmp_path / "pb.json"
    relabelled = {**record, "label": 1}
    path.write_text(json.dumps([record, other, record, relabelled]))
    summary = import_labelled.fn(db, str(path), "processbench", "run-1")
    assert (summary["rollouts"], summary["identical_repeats"], summary["quarantined"]) == (1, 1, 2)
    assert summary["human_step_labels"] == 1 and summary["human_outcome_labels"] == 1
    later = tmp_path / "later.jsonl"
    later.write_text(json.dumps(other) + "\n")
    assert import_labelled.fn(db, str(later), "processbench", "run-2")["quarantined"] == 1
    with Store(db) as store:
        assert [r["text"] for r in store.rows("SELECT text FROM steps ORDER BY step_index")] == record["steps"]
        assert store.rows("SELECT verdict FROM outcome_labels") == [{"verdict": "incorrect"}]
        refused = store.rows("SELECT record_ref, field, reason FROM quarantine ORDER BY record_ref")
    assert refused == [
        {
            "record_ref": "processbench:later.jsonl#1",
            "field": "rollout_id",
            "reason": "rollout_id: 'gsm8k-1' is stored with a different response",
        },
        {
            "record_ref": "processbench:pb.json#2",
            "field": "rollout_id",
            "reason": "rollout_id: 'gsm8k-1' repeats #1 with a different response",
        },
        {
            "record_ref": "processbench:pb.json#4",
            "field": "rollout_id",
            "reason": "rollout_id: 'gsm8k-1' repeats #1 with a different label",
        },
    ]
