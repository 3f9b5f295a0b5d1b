"""Bench: import N rollouts and label them with `answer` and `z3_arith`.

Writes bench/reports/import_annotate.md. Times the task functions directly (the
work itself) and the same work as Prefect flows (plus the orchestration cost).
Run: .venv/bin/python bench/import_annotate.py [N]
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from rmforge.problems.arithmetic import generate_arithmetic_problems

N_ROLLOUTS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
ANNOTATORS = ["answer", "z3_arith"]
REPORT = Path(__file__).parent / "reports" / "import_annotate.md"


def synthetic_rollouts(n: int, seed: int = 0) -> list[dict]:
    """GSM8K-style solutions from reference chains; a third carry an arithmetic slip."""
    rng = random.Random(seed)
    problems = generate_arithmetic_problems(max(1, n // 4), seed=seed, min_steps=2, max_steps=6)
    rows = []
    for i in range(n):
        p = problems[i % len(problems)]
        steps = list(p.reference_steps)
        answer = p.gold_answer
        if rng.random() < 1 / 3:
            k = rng.randrange(len(steps))
            lhs, rhs = steps[k].rsplit("=", 1)
            steps[k] = f"{lhs}= {int(rhs) + rng.choice([-2, -1, 1, 3])}"
            answer = str(int(answer) + 1)
        body = "\n".join(f"Step {j + 1}: {s}" for j, s in enumerate(steps))
        rows.append(
            {
                "problem_id": p.problem_id,
                "question": p.question,
                "gold_answer": p.gold_answer,
                "response": f"{body}\nThe answer is \\boxed{{{answer}}}",
                "model": f"synthetic-{i % 7}",
            }
        )
    return rows


def main() -> None:
    from rmforge.flows.annotate import annotate
    from rmforge.flows.import_rollouts import import_rollouts as import_flow
    from rmforge.schemas.config import GeneratorConfig, StepSplitConfig
    from rmforge.store.held import HeldStore
    from rmforge.tasks.annotate import label_batch, load_inputs, make_annotator, pending_rollout_ids, write_labels
    from rmforge.tasks.rollouts import import_rollouts
    from rmforge.tasks.steps import split_rollout_steps

    workdir = Path(tempfile.mkdtemp())
    source = workdir / "rollouts.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in synthetic_rollouts(N_ROLLOUTS)) + "\n")

    db = str(workdir / "tasks.duckdb")
    timings = {}
    t0 = time.perf_counter()
    import_rollouts.fn(db, str(source), "bench")
    split_rollout_steps.fn(db, StepSplitConfig())
    timings["import + split (tasks)"] = time.perf_counter() - t0
    for name in ANNOTATORS:
        t0 = time.perf_counter()
        annotator = make_annotator(name, None, GeneratorConfig())
        pending = pending_rollout_ids.fn(db, annotator)
        with HeldStore(db) as held:  # one store for the stage, as the annotate flow holds it
            for start in range(0, len(pending), 1000):
                with held.use() as store:
                    batch = load_inputs(store, pending[start : start + 1000], annotator.reads_siblings)
                output = label_batch.fn(annotator, batch, "bench")
                with held.use() as store:
                    write_labels(store, annotator, output)
        timings[f"annotate {name} (task)"] = time.perf_counter() - t0

    flow_db = str(workdir / "flows.duckdb")
    t0 = time.perf_counter()
    import_flow(str(source), flow_db)
    annotate(flow_db, ANNOTATORS, batch_size=1000)
    timings["import + annotate as Prefect flows (incl. temporary server start)"] = time.perf_counter() - t0

    lines = [
        "# Import and annotate bench",
        "",
        f"{N_ROLLOUTS} synthetic GSM8K-style rollouts (2-6 steps, a third with an arithmetic slip), "
        f"annotators {', '.join(ANNOTATORS)}; {os.cpu_count()} CPUs.",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in timings.items()],
        "",
        "Reproduce: `.venv/bin/python bench/import_annotate.py 1000`",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
