"""Bench: decontaminate a small GSM8K-style problem set against ProcessBench GSM8K.

Ten problems go into a fresh store: verbatim copies of ProcessBench problems (one
with a prefix added), hand-written paraphrases, a copy with changed numbers, and
original problems on the same topics. The decontamination task (tasks/decontaminate.py,
default thresholds: 13-gram any overlap, embedding cosine >= 0.85) runs against
ProcessBench's gsm8k.json; the report lists what was dropped and why, and the
nearest eval item's cosine for every problem (to judge the threshold).
Writes bench/reports/decontaminate.md.
Run: .venv/bin/python bench/decontaminate.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rmforge.generators.hardware import cpu_model

EVAL_SET = Path(
    os.environ.get("PROCESSBENCH", Path(__file__).resolve().parents[2] / "shared/data/processbench/gsm8k.json")
)
REPORT = Path(__file__).parent / "reports" / "decontaminate.md"

# (label, kind, question); `copy:ID` questions are read from the eval set itself.
PROBLEMS = [
    ("rick-copy", "verbatim copy", "copy:gsm8k-8"),
    ("gerald-copy", "verbatim copy with a prefix", "prefix:gsm8k-24"),
    (
        "flamingo-para",
        "paraphrase",
        "Over a weekend Sue's neighbours pranked her. Friday morning they put 18 pink plastic flamingos on her "
        "front lawn. Saturday morning they removed a third of them, painted those white, and returned them to "
        "the lawn. Sunday morning they set out 18 more pink flamingos. By Sunday noon, how many more pink than "
        "white flamingos were on the lawn?",
    ),
    (
        "rubik-para",
        "paraphrase",
        "John needs 5 minutes to solve the first face of a Rubik's cube. Faces two and three take him twice as "
        "long each. The final two faces take half the time of the first one each, and solving the fifth face "
        "completes all six. How many minutes does the whole cube take?",
    ),
    (
        "sofa-para",
        "paraphrase",
        "Ophelia and Jenna live in one apartment building. Each of them owns 2 sofas fewer than chairs. Jenna "
        "owns three times as many chairs as Ophelia does. Ophelia owns 20 sofas. What is the total count of "
        "sofas and chairs the two of them own?",
    ),
    (
        "gerald-numbers",
        "same story, other numbers",
        "Gerald works at a daycare that pays him $45 every day. He worked for 5 days and spent a total of $120. "
        "How much does he have left?",
    ),
    (
        "bakery",
        "original, same domain",
        "A bakery sells muffins for $3 each and cookies for $1 each. On Monday it sold 40 muffins and 25 cookies. "
        "How much money did it make on Monday?",
    ),
    (
        "garden",
        "original, same domain",
        "Mia plants 4 rows of tomatoes with 9 plants in each row. Rabbits eat 7 of the plants. How many tomato "
        "plants are left?",
    ),
    ("train", "original", "A train leaves at 2 pm and travels 180 km at 60 km per hour. At what time does it arrive?"),
    (
        "logic",
        "original, other domain",
        "If every bloop is a razzie and every razzie is a lazzie, is every bloop a lazzie?",
    ),
]


def main() -> None:
    from rmforge.curation.near_duplicates import nearest
    from rmforge.schemas.config import CurationConfig
    from rmforge.schemas.records import Problem
    from rmforge.store import Store
    from rmforge.tasks.decontaminate import decontaminate_problems, load_eval_items
    from rmforge.tasks.dedupe import cached_embeddings, deduplicate_problems

    eval_items = {item.item_id: item for item in load_eval_items(str(EVAL_SET))}
    problems, label_of = [], {}
    for label, _, text in PROBLEMS:
        kind, _, ref = text.partition(":")
        if kind == "copy":
            question = eval_items[ref].text
        elif kind == "prefix":
            question = "Answer the following question. " + eval_items[ref].text
        else:
            question = text
        problem = Problem(problem_id=Problem.make_id(question, None), question=question, source="bench")
        problems.append(problem)
        label_of[problem.problem_id] = label

    config = CurationConfig(decontaminate=[str(EVAL_SET)])
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.duckdb")
        with Store(db) as store:
            store.write("problems", problems)
        start = time.perf_counter()
        summary = decontaminate_problems.fn(db, config, "bench")
        seconds = time.perf_counter() - start
        deduplicate_problems.fn(db, config, "bench")
        with Store(db) as store:
            found = store.rows("SELECT * FROM contamination ORDER BY problem_id, method")
            status = {r["problem_id"]: r["status"] for r in store.rows("SELECT * FROM problem_curation")}
        # Nearest eval item of every problem (cached vectors: no second embedding).
        items = list(eval_items.values())
        problem_vectors = cached_embeddings(db, [p.question for p in problems], config)
        eval_vectors = cached_embeddings(db, [i.text for i in items], config)
        indices, sims = nearest(problem_vectors, eval_vectors, 1, exact=True)

    by_label = {label: [r for r in found if label_of[r["problem_id"]] == label] for label, _, _ in PROBLEMS}
    lines = [
        "# Decontamination bench",
        "",
        f"{len(problems)} GSM8K-style problems decontaminated against ProcessBench GSM8K "
        f"(`{EVAL_SET.name}`, {len(items)} problems): {config.decontaminate_ngram}-gram overlap "
        f"(drop when > {config.decontaminate_ngram_threshold} of a problem's n-grams occur in one eval item) and "
        f"embedding cosine >= {config.decontaminate_embedding_threshold} (all-MiniLM-L6-v2, "
        f"{config.embedding_dtype} dtype). Decontamination task: {seconds:.1f} s including embedding "
        f"{len(problems) + len(items)} texts on {cpu_model()} ({os.cpu_count()} CPUs, shared machine, load "
        f"{os.getloadavg()[0]:.1f}). Summary: {json.dumps(summary)}.",
        "",
        "| problem | kind | status | dropped by (method: score, eval item) | nearest eval item (cosine) |",
        "|---|---|---|---|---|",
    ]
    for (label, kind, _), problem, (index,), (sim,) in zip(PROBLEMS, problems, indices, sims):
        why = "; ".join(f"{r['method']}: {r['score']:.3f}, {r['eval_item_id']}" for r in by_label[label]) or "-"
        lines.append(
            f"| {label} | {kind} | {status[problem.problem_id]} | {why} | {items[index].item_id} ({sim:.3f}) |"
        )
    evidence = [r for r in found if r["method"] == "ngram"]
    lines += ["", "Shared 13-grams recorded as evidence:", ""]
    lines += [f'- {label_of[r["problem_id"]]}: "{r["evidence"]}"' for r in evidence]
    lines += ["", "Reproduce: `.venv/bin/python bench/decontaminate.py`", ""]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
