"""Build the curated datasets from labels, consensus and deduplication.

- preference_pairs: same prompt, chosen = answer verified correct, rejected =
  verified incorrect (unknown outcomes are never used), duplicates excluded.
- process_examples: TRL stepwise supervision. Steps are taken in order while
  their consensus is agreed; the first agreed-incorrect step ends the example
  (later steps have no meaningful label, as in OmegaPRM/ProcessBench), and a
  step without agreement ends it before that step.

Both are derived tables, rebuilt in full by each curation run.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.records import PreferencePair, ProcessExample, stable_hash
from tasks.store import Store

OUTCOME_ANNOTATOR = "answer"


def pair_rollouts(
    rows: Sequence[dict[str, Any]], max_pairs_per_problem: int, run_id: str
) -> list[PreferencePair]:
    """rows: kept rollouts with problem_id, question, response, rollout_id, verdict."""
    by_problem: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in sorted(rows, key=lambda r: r["rollout_id"]):
        by_problem[row["problem_id"]][row["verdict"]].append(row)
    pairs = []
    for problem_id, groups in sorted(by_problem.items()):
        # Pair round-robin so each chosen/rejected response is used before any repeats.
        combos = sorted(
            itertools.product(enumerate(groups["correct"]), enumerate(groups["incorrect"])),
            key=lambda c: (max(c[0][0], c[1][0]), c[0][0], c[1][0]),
        )
        for (_, chosen), (_, rejected) in combos[:max_pairs_per_problem]:
            pairs.append(
                PreferencePair(
                    pair_id=stable_hash("pair", chosen["rollout_id"], rejected["rollout_id"]),
                    problem_id=problem_id,
                    prompt=chosen["question"],
                    chosen=chosen["response"],
                    rejected=rejected["response"],
                    chosen_rollout_id=chosen["rollout_id"],
                    rejected_rollout_id=rejected["rollout_id"],
                    run_id=run_id,
                )
            )
    return pairs


def process_example(
    rollout: dict[str, Any], steps: Sequence[dict[str, Any]], run_id: str
) -> ProcessExample | None:
    """steps: ordered rows with text, verdict, agreed, score, annotators (None if unlabeled)."""
    completions, labels, soft, annotators = [], [], [], set()
    for step in steps:
        if not step.get("agreed"):
            break
        completions.append(step["text"])
        labels.append(step["verdict"] == "correct")
        soft.append(step["score"])
        annotators.update(step["annotators"] or [])
        if step["verdict"] == "incorrect":
            break
    if not completions:
        return None
    return ProcessExample(
        example_id=stable_hash("process", rollout["rollout_id"], completions, labels),
        rollout_id=rollout["rollout_id"],
        problem_id=rollout["problem_id"],
        prompt=rollout["question"],
        completions=completions,
        labels=labels,
        soft_labels=soft,
        annotators=sorted(annotators),
        run_id=run_id,
    )


_KEPT_ROLLOUTS = """
    SELECT r.rollout_id, r.problem_id, r.response, p.question
    FROM rollouts r JOIN problems p USING (problem_id)
    LEFT JOIN rollout_curation c USING (rollout_id)
    WHERE coalesce(c.status, 'kept') = 'kept'
"""


@task(name="build-datasets", cache_policy=NO_CACHE)
def build_datasets(db: str, max_pairs_per_problem: int, run_id: str) -> dict[str, int]:
    with Store(db) as store:
        outcome_rows = store.rows(
            f"""
            WITH kept AS ({_KEPT_ROLLOUTS}),
            outcome AS (
                SELECT rollout_id, verdict FROM outcome_labels WHERE annotator = ?
                QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY labeled_at DESC) = 1)
            SELECT kept.*, outcome.verdict FROM kept JOIN outcome USING (rollout_id)
            WHERE outcome.verdict IN ('correct', 'incorrect')
            """,
            [OUTCOME_ANNOTATOR],
        )
        pairs = pair_rollouts(outcome_rows, max_pairs_per_problem, run_id)

        step_rows = store.rows(
            f"""
            WITH kept AS ({_KEPT_ROLLOUTS})
            SELECT kept.rollout_id, kept.problem_id, kept.question, s.step_index, s.text,
                   c.verdict, c.agreed, c.score, c.annotators
            FROM kept JOIN steps s USING (rollout_id)
            LEFT JOIN step_consensus c USING (rollout_id, step_index)
            ORDER BY kept.rollout_id, s.step_index
            """
        )
        examples = []
        for _, group in itertools.groupby(step_rows, key=lambda r: r["rollout_id"]):
            steps = list(group)
            example = process_example(steps[0], steps, run_id)
            if example is not None:
                examples.append(example)

        store.begin()
        store.execute("DELETE FROM preference_pairs")
        store.execute("DELETE FROM process_examples")
        store.write("preference_pairs", pairs)
        store.write("process_examples", examples)
        store.commit()
    return {"preference_pairs": len(pairs), "process_examples": len(examples)}
