import json

import pytest

from rmforge.annotators.z3_arith import label_step
from rmforge.problems.arithmetic import generate_arithmetic_problems
from rmforge.problems.problem_import import import_problem_rows, split_gsm8k_answer
from rmforge.problems.records import read_records


def test_generator_is_deterministic_and_ids_are_unique():
    a = generate_arithmetic_problems(20, seed=3)
    b = generate_arithmetic_problems(20, seed=3)
    assert [p.problem_id for p in a] == [p.problem_id for p in b]
    assert len({p.problem_id for p in a}) == 20
    assert [p.problem_id for p in generate_arithmetic_problems(20, seed=4)] != [p.problem_id for p in a]


@pytest.mark.parametrize("steps", [1, 3, 6])
def test_reference_chain_is_exact_and_ends_at_the_gold(steps):
    for problem in generate_arithmetic_problems(15, seed=steps, min_steps=steps, max_steps=steps):
        assert problem.difficulty in (steps, steps + 1)  # +1 when a price step is appended
        last = problem.reference_steps[-1]
        assert last.split("=")[-1].strip() == problem.gold_answer
        for step in problem.reference_steps:
            assert label_step(step)[0] == "correct", step
        value = int(problem.gold_answer)
        assert value >= 0


def test_min_above_max_is_rejected():
    with pytest.raises(ValueError, match="min_steps"):
        generate_arithmetic_problems(1, min_steps=5, max_steps=2)


def test_gsm8k_answer_split():
    gold, steps = split_gsm8k_answer("She has 16 - 3 = <<16-3=13>>13 eggs.\nShe sells them for $2.\n#### 1,026")
    assert gold == "1026"
    assert len(steps) == 2


def test_import_quarantines_bad_rows_naming_the_field(tmp_path):
    path = tmp_path / "problems.jsonl"
    rows = [
        {"question": "What is 2+2?", "answer": "#### 4"},
        {"question": "", "answer": "1"},
        {"answer": "3"},
        {"question": "Q?", "answer": ["list"]},
        {"question": "Given id", "answer": 5, "problem_id": "p-7"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    result = import_problem_rows(read_records(path), "file:problems.jsonl", "run", "question", "answer")
    assert [p.gold_answer for p in result.problems] == ["4", "5"]
    assert result.problems[1].problem_id == "p-7"
    fields = sorted(q.field for q in result.quarantine)
    assert fields == ["answer", "question", "question", "record"]
    assert all(q.record_ref.startswith("file:problems.jsonl#") for q in result.quarantine)


def test_hugging_face_sources_saved_folder_and_data_folder(tmp_path):
    import datasets

    from rmforge.schemas.config import ProblemSourceConfig
    from rmforge.tasks.problems import load_problems

    rows = [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(5)]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for folder in ("saved", "raw"):
        config = ProblemSourceConfig(kind="hf", path=str(tmp_path / folder), split="test", count=3)
        result = load_problems.fn(config, "run")
        assert [p.gold_answer for p in result.problems] == ["0", "2", "4"], folder
        assert result.problems[0].source.startswith("hf:")


def test_file_source_requires_a_path():
    from rmforge.schemas.config import ProblemSourceConfig
    from rmforge.tasks.problems import load_problems

    with pytest.raises(ValueError, match=r"problems\.path"):
        load_problems.fn(ProblemSourceConfig(kind="file"), "run")


def test_folio_records_keep_their_formulas():
    import json as _json

    from rmforge.problems.problem_import import problem_from_record

    record = {
        "story_id": 7,
        "example_id": 3,
        "premises": "All cats are mammals.\nTom is a cat.",
        "premises-FOL": "∀x (Cat(x) → Mammal(x))\nCat(tom)",
        "conclusion": "Tom is a mammal.",
        "conclusion-FOL": "Mammal(tom)",
        "label": "True",
    }
    problem = problem_from_record(record, "folio")
    assert problem.domain == "logic" and problem.gold_answer == "True"
    assert problem.problem_id == "folio-7-3"
    assert _json.loads(problem.metadata)["premises"] == ["∀x (Cat(x) → Mammal(x))", "Cat(tom)"]
    with pytest.raises(ValueError, match=r"^label"):
        problem_from_record({**record, "label": "Maybe"}, "folio")


BOM = "\ufeff"  # Windows tools start UTF-8 files with it


@pytest.mark.parametrize(
    "name, text",
    [
        ("problems.json", BOM + json.dumps([{"question": f"What is {i}+1?", "answer": str(i + 1)} for i in range(3)])),
        (
            "problems.jsonl",
            BOM + "\n".join(json.dumps({"question": f"What is {i}+1?", "answer": str(i + 1)}) for i in range(3)),
        ),
    ],
)
def test_a_byte_order_mark_is_read_as_the_file_it_starts(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = import_problem_rows(read_records(path), f"file:{name}", "run", "question", "answer")
    assert not result.quarantine
    assert [p.gold_answer for p in result.problems] == ["1", "2", "3"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_as_gold_is_quarantined(tmp_path, constant):
    path = tmp_path / "problems.jsonl"
    path.write_text(
        f'{{"question": "What is 1+1?", "answer": 2}}\n{{"question": "What is 0/0?", "answer": {constant}}}\n'
    )
    result = import_problem_rows(read_records(path), "file:problems.jsonl", "run", "question", "answer")
    assert [p.gold_answer for p in result.problems] == ["2"]
    (refused,) = result.quarantine
    assert refused.record_ref == "file:problems.jsonl#2" and refused.field == "answer"
    assert f"{constant} is not a finite number" in refused.reason


def test_a_gold_answers_file_with_a_byte_order_mark_or_a_non_finite_gold(tmp_path):
    from rmforge.problems.labelled_import import read_gold_answers
    from rmforge.problems.records import InputFileError

    gold = tmp_path / "gold.json"
    gold.write_text(BOM + '{"a": "7", "b": 3}', encoding="utf-8")
    assert read_gold_answers(gold) == {"a": "7", "b": "3"}
    gold.write_text('{"a": "7", "b": NaN}', encoding="utf-8")
    with pytest.raises(InputFileError, match="b: NaN is not a finite number"):
        read_gold_answers(gold)


def test_operations_and_max_number_bound_the_problems():
    problems = generate_arithmetic_problems(12, seed=1, min_steps=1, max_steps=1, operations=["+"], max_number=9)
    for problem in problems:
        (step,) = problem.reference_steps  # no price step without `*`
        left, right = step.split(" = ")[0].split(" + ")
        assert 2 <= int(left) <= 9 and 2 <= int(right) <= 9, step
        assert "Then" in problem.question and "gets" in problem.question


@pytest.mark.slow  # generates problems until it gives up (~2.5 s)
def test_settings_with_too_few_distinct_problems_are_refused():
    with pytest.raises(ValueError, match="distinct problems"):
        generate_arithmetic_problems(500, seed=0, min_steps=1, max_steps=1, operations=["+"], max_number=3)
    with pytest.raises(ValueError, match="name none"):
        generate_arithmetic_problems(1, operations=["^"])
