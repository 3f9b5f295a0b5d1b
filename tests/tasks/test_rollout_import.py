import json

import pytest

from rmforge.problems.rollout_import import parse_rollout_rows
from rmforge.store import Store
from rmforge.tasks.rollouts import import_rollouts


def _rows(n):
    return [
        {
            "problem_id": f"p{i % 10}",
            "question": f"What is {i % 10} + 1?",
            "gold_answer": str(i % 10 + 1),
            "response": f"Step 1: {i % 10} + 1 = {i % 10 + 1}\nThe answer is \\boxed{{{i % 10 + 1 + (i % 3 == 0)}}}",
            "model": f"m{i}",
        }
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
            f"p{i}" for i in range(10)
        ]


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


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_given_steps_are_stored_exactly(tmp_path, db):
    steps = ["First, 3 + 4 = 7.", "  Indented step with trailing space  ", "So the answer is $\\boxed{7}$."]
    path = _write(tmp_path / "r.jsonl", [{"problem_id": "p", "question": "3+4?", "gold_answer": "7", "steps": steps}])
    summary = import_rollouts.fn(db, str(path), "run")
    assert summary["rollouts"] == 1 and summary["new_steps"] == 3
    with Store(db) as store:
        assert [r["text"] for r in store.rows("SELECT text FROM steps ORDER BY step_index")] == steps
        assert store.rows("SELECT response FROM rollouts")[0]["response"] == "\n\n".join(steps)


def test_invalid_utf8_is_quarantined_and_valid_rows_kept(tmp_path, db):
    path = tmp_path / "r.jsonl"
    good = json.dumps(_rows(1)[0]).encode()
    path.write_bytes(good + b"\n" + b'{"problem_id": "x\xff\xfe"}\n' + good.replace(b"m0", b"m9") + b"\n")
    summary = import_rollouts.fn(db, str(path), "run")
    assert summary["rollouts"] == 2 and summary["quarantined"] == 1
    with Store(db) as store:
        row = store.rows("SELECT record_ref, reason FROM quarantine")[0]
    assert row["record_ref"] == "file:r.jsonl#2" and "invalid UTF-8" in row["reason"]


def test_a_json_array_file_is_read_as_one(tmp_path, db):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_rows(3)))
    assert import_rollouts.fn(db, str(path), "run")["rollouts"] == 3


def test_empty_file_and_folder_say_so(tmp_path, db):
    from rmforge.problems.records import InputFileError

    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputFileError, match="holds no records"):
        import_rollouts.fn(db, str(tmp_path / "empty.jsonl"), "run")
    with pytest.raises(InputFileError, match="is a folder"):
        import_rollouts.fn(db, str(tmp_path), "run")


@pytest.mark.parametrize(
    "field,value",
    [
        ("response", True),
        ("response", ["a", "b"]),
        ("question", False),
        ("model", 3),
        ("gold_answer", True),
        ("steps", "one string"),
        ("steps", ["ok", 5]),
        ("num_tokens", True),
    ],
)
def test_booleans_and_lists_in_text_fields_are_rejected(field, value):
    row = {**_rows(1)[0], field: value}
    parsed = parse_rollout_rows([row], "f", "run")
    assert not parsed.rollouts and parsed.quarantine[0].field == field


def test_a_stored_problem_id_with_another_question_or_gold_is_quarantined(tmp_path, db):
    first = _write(tmp_path / "a.jsonl", _rows(10))
    import_rollouts.fn(db, str(first), "run-1")
    clash = [
        {**_rows(1)[0], "question": "A different question?", "model": "x"},
        {**_rows(2)[1], "gold_answer": "99", "model": "y"},
        {**_rows(3)[2], "model": "z"},  # same problem, same gold: attaches fine
    ]
    summary = import_rollouts.fn(db, str(_write(tmp_path / "b.jsonl", clash)), "run-2")
    assert summary["rollouts"] == 1 and summary["quarantined"] == 2
    with Store(db) as store:
        fields = sorted(r["field"] for r in store.rows("SELECT field FROM quarantine"))
        assert fields == ["gold_answer", "question"]
        assert store.rows("SELECT question FROM problems WHERE problem_id = 'p0'")[0]["question"] == "What is 0 + 1?"


def test_a_file_larger_than_a_chunk_is_streamed_chunk_by_chunk(tmp_path, db, monkeypatch):
    """Memory follows the chunk, not the file: rows are parsed and stored a chunk at a time,
    line numbers run on across chunks, and a conflict across chunks is still caught."""
    from rmforge.tasks import rollouts

    monkeypatch.setattr(rollouts, "IMPORT_CHUNK_ROWS", 4)
    rows = _rows(10)
    conflicting = {**_rows(1)[0], "question": "Another question under p0", "model": "late"}
    lines = [json.dumps(r) for r in rows[:5]] + ["", "{not json"] + [json.dumps(r) for r in rows[5:]]
    lines.append(json.dumps(conflicting))
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    reached = []
    summary = import_rollouts.fn(db, str(path), "run", on_rows=reached.append)
    # 12 records on 13 lines (line 6 is blank): three chunks, ending at lines 4, 9 and 13
    assert reached == [4, 9, 13]
    assert summary["rollouts"] == 10 and summary["problems"] == 10
    assert summary["quarantined"] == 2 and summary["rows_read"] == 12
    with Store(db) as store:
        quarantined = {
            q["record_ref"]: (q["field"], q["reason"])
            for q in store.rows("SELECT record_ref, field, reason FROM quarantine")
        }
        assert store.count("rollouts") == 10 and store.count("steps") >= 10
    # the late row's problem was stored by an earlier chunk: refused as a stored-problem conflict
    late = next(ref for ref in quarantined if ref != "file:r.jsonl#7")
    assert quarantined["file:r.jsonl#7"][0] == "record"
    assert late.startswith("file:r.jsonl#rollout ") and quarantined[late][0] == "question"
    assert "differs from the stored problem 'p0'" in quarantined[late][1]


def test_a_parquet_file_is_read_in_row_batches_with_running_numbers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rmforge.problems.records import count_records, iter_record_chunks

    path = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist(_rows(7)), path, row_group_size=3)
    chunks = list(iter_record_chunks(path, rows_per_chunk=2))
    assert [len(c) for c in chunks] == [2, 2, 2, 1]
    assert [n for c in chunks for n, _ in c] == list(range(1, 8))
    assert [row["model"] for c in chunks for _, row in c] == [f"m{i}" for i in range(7)]
    assert count_records(path) == 7


@pytest.mark.parametrize(
    "name, text",
    [
        ("r.json", json.dumps(_rows(3))),
        ("r.jsonl", "\n".join(json.dumps(r) for r in _rows(3)) + "\n"),
    ],
)
def test_a_file_starting_with_a_byte_order_mark_imports_every_row(tmp_path, db, name, text):
    path = tmp_path / name
    path.write_text("\ufeff" + text, encoding="utf-8")
    summary = import_rollouts.fn(db, str(path), "run")
    assert summary["rollouts"] == 3 and summary["quarantined"] == 0 and summary["rows_read"] == 3


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_gold_answer_is_quarantined(constant):
    (row,) = _rows(1)
    line = json.dumps({**row, "gold_answer": 0}).replace('"gold_answer": 0', f'"gold_answer": {constant}')
    parsed = parse_rollout_rows([json.loads(line)], "f", "run")
    assert not parsed.rollouts
    (refused,) = parsed.quarantine
    assert refused.field == "gold_answer" and f"{constant} is not a finite number" in refused.reason


def _rollout(**fields):
    """A rollout row with an id of its own and given steps; `fields` change or add fields."""
    steps = ["3 + 4 = 7.", "So the answer is 7."]
    return {
        "rollout_id": "r1",
        "problem_id": "p",
        "question": "What is 3 + 4?",
        "gold_answer": "7",
        "response": "\n\n".join(steps),
        "steps": steps,
        "model": "m",
        **fields,
    }


def _quarantined(db):
    with Store(db) as store:
        return store.rows("SELECT record_ref, field, reason FROM quarantine ORDER BY record_ref")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"response": "3 + 4 = 8.", "steps": ["3 + 4 = 8."]}, "response"),
        ({"problem_id": "q", "question": "What is 5 + 2?"}, "problem_id"),
        ({"model": "another-model"}, "model"),
        ({"steps": ["3 + 4 = 7. So the answer", "is 7."]}, "steps"),
    ],
)
def test_a_repeated_rollout_id_with_other_content_is_quarantined_not_merged(tmp_path, db, change, field):
    path = _write(tmp_path / "r.jsonl", [_rows(1)[0], _rollout(), _rollout(**change)])
    summary = import_rollouts.fn(db, str(path), "run")
    assert summary["rollouts"] == 2 and summary["quarantined"] == 1 and summary["rows_read"] == 3
    assert _quarantined(db) == [
        {
            "record_ref": "file:r.jsonl#3",
            "field": "rollout_id",
            "reason": f"rollout_id: 'r1' repeats #2 with a different {field}",
        }
    ]
    with Store(db) as store:  # the first record stands whole: its response, problem, model and steps
        assert store.rows("SELECT response, problem_id, model FROM rollouts WHERE rollout_id = 'r1'") == [
            {"response": _rollout()["response"], "problem_id": "p", "model": "m"}
        ]
        assert [
            r["text"] for r in store.rows("SELECT text FROM steps WHERE rollout_id = 'r1' ORDER BY step_index")
        ] == _rollout()["steps"]
        assert sorted(r["problem_id"] for r in store.rows("SELECT problem_id FROM problems")) == ["p", "p0"]


def test_an_identical_repeat_is_stored_once_and_counted(tmp_path, db):
    path = _write(tmp_path / "r.jsonl", [_rollout(), _rows(1)[0], _rollout()])
    first = import_rollouts.fn(db, str(path), "run-1")
    assert (first["rollouts"], first["identical_repeats"], first["quarantined"], first["rows_read"]) == (2, 1, 0, 3)
    again = import_rollouts.fn(db, str(path), "run-2")
    assert (again["rollouts"], again["identical_repeats"], again["quarantined"], again["rows_read"]) == (0, 3, 0, 3)
    with Store(db) as store:
        assert store.count("rollouts") == 2 and not _quarantined(db)


def test_a_different_rollout_under_a_stored_id_is_quarantined(tmp_path, db):
    import_rollouts.fn(db, str(_write(tmp_path / "a.jsonl", [_rollout()])), "run-1")
    clash = _rollout(problem_id="q", question="What is 5 + 2?", response="5 + 2 = 7.", steps=None)
    summary = import_rollouts.fn(db, str(_write(tmp_path / "b.jsonl", [_rows(1)[0], clash])), "run-2")
    assert (summary["rollouts"], summary["problems"], summary["quarantined"]) == (1, 1, 1)
    assert _quarantined(db) == [
        {
            "record_ref": "file:b.jsonl#2",
            "field": "rollout_id",
            "reason": "rollout_id: 'r1' is stored with a different response",
        }
    ]
    with Store(db) as store:  # nothing of the refused record: not its response, not its new problem
        assert (
            store.rows("SELECT response FROM rollouts WHERE rollout_id = 'r1'")[0]["response"] == _rollout()["response"]
        )
        assert store.rows("SELECT count(*) AS n FROM problems WHERE problem_id = 'q'")[0]["n"] == 0


def test_a_repeated_rollout_id_in_a_later_chunk_is_compared_with_the_stored_one(tmp_path, db, monkeypatch):
    from rmforge.tasks import rollouts

    monkeypatch.setattr(rollouts, "IMPORT_CHUNK_ROWS", 2)
    rows = [_rollout(), _rows(1)[0], _rollout(model="another-model"), _rows(1)[0]]
    summary = import_rollouts.fn(db, str(_write(tmp_path / "r.jsonl", rows)), "run")
    assert (summary["rollouts"], summary["identical_repeats"], summary["quarantined"], summary["rows_read"]) == (
        2,
        1,
        1,
        4,
    )
    assert _quarantined(db) == [
        {
            "record_ref": "file:r.jsonl#3",
            "field": "rollout_id",
            "reason": "rollout_id: 'r1' is stored with a different model",
        }
    ]


def test_a_jsonl_file_whose_first_line_opens_an_array_is_still_read_line_by_line(tmp_path):
    # Found by Hypothesis (test_every_jsonl_line_is_stored_or_quarantined): the `.jsonl` name says one
    # record per line, so a first line "[" is one malformed record, not the start of a JSON array.
    from rmforge.problems.records import count_records, read_records

    path = tmp_path / "rows.jsonl"
    path.write_text('[\n{"problem_id": "p", "question": "1+1?", "gold_answer": "2", "response": "2"}\n')
    rows = read_records(path)
    assert [number for number, _ in rows] == [1, 2]
    assert rows[1][1]["problem_id"] == "p"
    assert count_records(path) == 2
