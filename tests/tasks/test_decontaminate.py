import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rmforge.generators.embeddings import embed
from rmforge.schemas.config import CurationConfig
from rmforge.schemas.records import OutcomeLabel
from rmforge.store import Store
from rmforge.tasks.consensus import compute_consensus
from rmforge.tasks.datasets import build_datasets
from rmforge.tasks.decontaminate import NgramIndex, decontaminate_problems, find_contamination, load_eval_items, words
from rmforge.tasks.dedupe import deduplicate_problems, deduplicate_rollouts
from tests.builders import make_problem, make_rollout

FLAMINGOS = (
    "Sue lives in a fun neighborhood. One weekend, the neighbors decided to play a prank on Sue. "
    "On Friday morning, the neighbors placed 18 pink plastic flamingos out on Sue's front yard."
)
JANET = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
    "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh "
    "duck egg. How much in dollars does she make every day at the farmers' market?"
)
JANET_PARAPHRASE = (
    "Each day Janet's ducks produce 16 eggs. Every morning she has three of them for breakfast and "
    "uses four to bake muffins for friends. She sells what is left at the farmers' market for $2 "
    "an egg. How many dollars does she earn daily at the market?"
)
UNRELATED = "A train leaves at 3 pm and travels 120 km at 60 km per hour. When does it arrive?"


def eval_rows():
    return [{"id": "gsm8k-0", "problem": FLAMINGOS, "steps": ["..."]}, {"id": "gsm8k-1", "problem": JANET}]


@pytest.mark.parametrize("kind", ["json", "jsonl", "parquet", "hf_folder"])
def test_eval_sets_load_from_files_and_dataset_folders(tmp_path, kind):
    rows = eval_rows()
    path = tmp_path / f"eval.{kind}"
    if kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist([{"id": r["id"], "problem": r["problem"]} for r in rows]), path)
    else:
        import datasets

        datasets.DatasetDict(
            {"test": datasets.Dataset.from_list([{"question": r["problem"], "answer": "1"} for r in rows])}
        ).save_to_disk(str(path))
    items = load_eval_items(str(path))
    assert [i.text for i in items] == [FLAMINGOS, JANET]
    assert [i.item_id for i in items] == (["0", "1"] if kind == "hf_folder" else ["gsm8k-0", "gsm8k-1"])


@pytest.mark.parametrize("name", ["eval.json", "eval.jsonl"])
def test_an_eval_set_starting_with_a_byte_order_mark_loads_every_question(tmp_path, name):
    path = tmp_path / name
    rows = eval_rows()
    text = json.dumps(rows) if name.endswith(".json") else "\n".join(json.dumps(r) for r in rows)
    path.write_text("\ufeff" + text, encoding="utf-8")
    assert [i.text for i in load_eval_items(str(path))] == [FLAMINGOS, JANET]


def test_eval_set_errors_name_the_record_and_field(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"problem": "fine"}) + "\n" + json.dumps({"text": "no question"}) + "\n")
    with pytest.raises(ValueError, match=r"eval.jsonl#2: no question field \(one of problem, question"):
        load_eval_items(str(path))
    path.write_text("")
    with pytest.raises(ValueError, match="holds no records"):
        load_eval_items(str(path))
    with pytest.raises(ValueError, match="cannot load evaluation set"):
        load_eval_items(str(tmp_path / "missing"))


def test_ngram_overlap_scores_copies_and_ignores_unrelated_text():
    index = NgramIndex(load_items(), 13)
    item, score, evidence = index.best_match("Solve this: " + JANET.upper())  # case and prefix don't hide it
    n_words = len(words(JANET))  # the prefix adds 2 n-grams that are not in the eval item
    assert (item, score) == (1, pytest.approx((n_words - 12) / (n_words - 10))) and len(evidence.split()) == 13
    assert index.best_match(UNRELATED) is None
    assert index.best_match(JANET_PARAPHRASE) is None  # rewording breaks every 13-gram
    short = NgramIndex(load_items() + [type(load_items()[0])("short", "What is 2 + 3?")], 13)
    assert short.best_match("what is 2+3") == (2, 1.0, "what is 2 3")
    assert short.best_match("what is 2 + 4?") is None


def load_items():
    from rmforge.tasks.decontaminate import EvalItem

    return [EvalItem(r["id"], r["problem"]) for r in eval_rows()]


@pytest.mark.slow  # loads the embedding model
def test_paraphrases_are_caught_by_embedding_similarity():
    problems = [
        {"problem_id": "copy", "question": JANET},
        {"problem_id": "para", "question": JANET_PARAPHRASE},
        {"problem_id": "other", "question": UNRELATED},
    ]
    config = CurationConfig(embedding_dtype="float32", decontaminate_embedding_threshold=0.8)
    found = find_contamination(problems, {"gsm8k": load_items()}, config, "run", lambda t: embed(t, config))
    by = {(c.problem_id, c.method): c for c in found}
    assert set(by) == {("copy", "ngram"), ("copy", "embedding"), ("para", "embedding")}
    assert by[("para", "embedding")].eval_item_id == "gsm8k-1" and 0.8 <= by[("para", "embedding")].score < 0.99
    assert by[("copy", "embedding")].score > 0.99 and by[("copy", "ngram")].score == 1.0
    no_embedding = config.model_copy(update={"decontaminate_embedding_threshold": None})
    found = find_contamination(problems, {"gsm8k": load_items()}, no_embedding, "run", lambda t: embed(t, config))
    assert [(c.problem_id, c.method) for c in found] == [("copy", "ngram")]


@pytest.mark.slow  # loads the embedding model
def test_contaminated_problems_leave_the_curated_datasets(tmp_path, db):
    eval_path = tmp_path / "gsm8k.json"
    eval_path.write_text(json.dumps(eval_rows()))
    copied, clean = make_problem(JANET, "18"), make_problem(UNRELATED, "5 pm")
    rollouts = {
        p.problem_id: [make_rollout(p, f"Work. The answer is {a}.", index=i) for i, a in enumerate(answers)]
        for p, answers in ((copied, ["18", "17"]), (clean, ["5 pm", "6 pm"]))
    }
    with Store(db) as store:
        store.write("problems", [copied, clean])
        store.write("rollouts", [r for rs in rollouts.values() for r in rs])
        store.write(
            "outcome_labels",
            [
                OutcomeLabel(
                    rollout_id=r.rollout_id,
                    annotator="answer",
                    annotator_version="1",
                    config_hash="h",
                    verdict="correct" if i == 0 else "incorrect",
                    run_id="run",
                )
                for rs in rollouts.values()
                for i, r in enumerate(rs)
            ],
        )
    config = CurationConfig(decontaminate=[str(eval_path)])
    assert decontaminate_problems.fn(db, config, "run") == {"eval_items": 2, "contaminated_problems": 1}
    assert deduplicate_rollouts.fn(db, config, "run") == {"contaminated": 2, "kept": 2}
    assert deduplicate_problems.fn(db, config, "run") == {"contaminated": 1, "kept": 1}
    compute_consensus.fn(db, ["answer"], config, "run")
    assert build_datasets.fn(db, 8, "run")["preference_pairs"] == 1
    with Store(db) as store:
        assert {r["problem_id"] for r in store.rows("SELECT problem_id FROM preference_pairs")} == {clean.problem_id}
        why = store.rows("SELECT problem_id, eval_set, eval_item_id, method FROM contamination ORDER BY method")
        assert why == [
            {"problem_id": copied.problem_id, "eval_set": str(eval_path), "eval_item_id": "gsm8k-1", "method": m}
            for m in ("embedding", "ngram")
        ]
    # Without eval sets the derived table empties and nothing stays marked.
    assert decontaminate_problems.fn(db, CurationConfig(), "run2") == {"eval_items": 0, "contaminated_problems": 0}
    assert deduplicate_rollouts.fn(db, CurationConfig(), "run2") == {"kept": 4}


def test_curate_command_decontaminates_against_a_given_file(prefect_harness, tmp_path, db):
    from typer.testing import CliRunner

    from rmforge.cli import app

    eval_path = tmp_path / "gsm8k.json"
    eval_path.write_text(json.dumps(eval_rows()))
    copied, clean = make_problem(JANET, "18"), make_problem(UNRELATED, "5 pm")
    with Store(db) as store:
        store.write("problems", [copied, clean])
        store.write("rollouts", [make_rollout(copied, "The answer is 18."), make_rollout(clean, "The answer is 5 pm.")])
    result = CliRunner().invoke(
        app, ["curate", "--db", db, "--annotators", "answer", "--decontaminate", str(eval_path)]
    )
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        assert store.rows("SELECT status, count(*) AS n FROM rollout_curation GROUP BY status ORDER BY status") == [
            {"status": "contaminated", "n": 1},
            {"status": "kept", "n": 1},
        ]
        assert store.rows("SELECT problem_id, status FROM problem_curation ORDER BY status") == [
            {"problem_id": copied.problem_id, "status": "contaminated"},
            {"problem_id": clean.problem_id, "status": "kept"},
        ]
