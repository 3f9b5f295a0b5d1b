import json

from tasks.rollouts import import_rollouts, parse_rollout_rows
from tasks.store import Store


def _rows(n):
    return [
        {"problem_id": f"p{i % 10}", "question": f"What is {i % 10} + 1?", "gold_answer": str(i % 10 + 1),
         "response": f"Step 1: {i % 10} + 1 = {i % 10 + 1}\nThe answer is \\boxed{{{i % 10 + 1 + (i % 3 == 0)}}}",
         "model": f"m{i}"}
        for i in range(n)
    ]


def test_import_keeps_given_problem_ids_and_is_idempotent(tmp_path, db):
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _rows(30)))
    first = import_rollouts.fn(db, str(path), "run-1")
    second = import_rollouts.fn(db, str(path), "run-2")
    assert first["problems"] == 10 and first["rollouts"] == 30
    assert second["problems"] == 0 and second["rollouts"] == 0
    with Store(db) as store:
        assert sorted(r["problem_id"] for r in store.rows("SELECT DISTINCT problem_id FROM rollouts")) == [
            f"p{i}" for i in range(10)]


def test_bad_rows_are_quarantined_with_the_field():
    rows = _rows(2) + [
        {"problem_id": "p1", "question": "Q", "response": 5},
        {"question": "no id", "response": "x"},
        {"problem_id": "p0", "question": "What is 0 + 1?", "gold_answer": {"a": 1}, "response": "x"},
        {"problem_id": "p0", "question": "A different question", "response": "x"},
        "garbage",
    ]
    parsed = parse_rollout_rows(rows, "file:r.jsonl", "run")
    assert len(parsed.rollouts) == 2
    reasons = {q.record_ref: (q.field, q.reason) for q in parsed.quarantine}
    assert reasons["file:r.jsonl#3"][0] == "response"
    assert reasons["file:r.jsonl#4"][0] == "problem_id"
    assert reasons["file:r.jsonl#5"][0] == "gold_answer"
    assert reasons["file:r.jsonl#6"][0] == "question"
    assert reasons["file:r.jsonl#7"][0] == "record"
