"""Build the curated datasets from labels, consensus and deduplication.

- preference_pairs: same prompt, chosen = final answer judged correct by the outcome
  consensus, rejected = judged incorrect (unknown outcomes are never used), duplicates
  excluded.
- process_examples: TRL stepwise supervision. Steps are taken in order while their
  consensus is agreed; the first agreed-incorrect step ends the example (later steps
  have no meaningful label, as in OmegaPRM/ProcessBench), and a step without agreement
  ends it before that step. See `process_example` for when a rollout yields none.

Both are derived tables, rebuilt in full by each curation run.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.schemas.records import PreferencePair, ProcessExample, stable_hash
from rmforge.store import Store


def pair_rollouts(rows: Sequence[dict[str, Any]], max_pairs_per_problem: int, run_id: str) -> list[PreferencePair]:
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


# Why a rollout yields no process example (counted in the curation summary).
NO_DECIDED_STEP = "first step undecided"
WRONG_ANSWER_ALL_CORRECT = "final answer incorrect but no step refuted"
OUTCOME_UNKNOWN_INCOMPLETE = "final answer unknown and some step undecided"


def process_example(
    rollout: dict[str, Any], steps: Sequence[dict[str, Any]], outcome: str | None, run_id: str
) -> ProcessExample | str:
    """The TRL stepwise example of one rollout, or the reason there is none.

    steps: ordered rows with text, verdict, agreed, score, supporters, outcome_implied (None if
    unlabelled).
    Steps are taken while their consensus is agreed, up to the first incorrect one. A
    rollout whose final answer is incorrect must end in a refuted step (never all-correct
    labels); one whose outcome is unknown (or unlabelled) needs every step decided.
    """
    completions, labels, soft, supporters, outcome_implied = [], [], [], [], []
    complete = True
    for step in steps:
        if not step.get("agreed"):
            complete = False
            break
        correct = step["verdict"] == "correct"
        completions.append(step["text"])
        labels.append(correct)
        soft.append(float(step["score"]) if step["score"] is not None else float(correct))
        supporters.append(sorted(step["supporters"] or []))
        outcome_implied.append(bool(step.get("outcome_implied")))
        if not correct:
            break
    if not completions:
        return NO_DECIDED_STEP
    if outcome == "incorrect" and all(labels):
        return WRONG_ANSWER_ALL_CORRECT
    if outcome not in ("correct", "incorrect") and not complete:
        return OUTCOME_UNKNOWN_INCOMPLETE
    return ProcessExample(
        example_id=stable_hash("process", rollout["rollout_id"], completions, labels),
        rollout_id=rollout["rollout_id"],
        problem_id=rollout["problem_id"],
        prompt=rollout["question"],
        completions=completions,
        labels=labels,
        soft_labels=soft,
        annotators=sorted({name for names in supporters for name in names}),
        label_supporters=supporters,
        outcome_implied=outcome_implied,
        run_id=run_id,
    )


_KEPT_ROLLOUTS = """
    SELECT r.rollout_id, r.problem_id, r.response, p.question
    FROM kept_rollouts r JOIN problems p USING (problem_id)
"""


@task(name="build-datasets", cache_policy=NO_CACHE)
def build_datasets(db: str, max_pairs_per_problem: int, run_id: str) -> dict[str, Any]:
    """Rebuild preference pairs and process examples from the consensus tables."""
    with Store(db) as store:
        outcome_rows = store.rows(
            f"""
            WITH kept AS ({_KEPT_ROLLOUTS})
            SELECT kept.*, o.verdict FROM kept JOIN outcome_consensus o USING (rollout_id)
            WHERE o.verdict IN ('correct', 'incorrect')
            """
        )
        pairs = pair_rollouts(outcome_rows, max_pairs_per_problem, run_id)

        step_rows = store.rows(
            f"""
            WITH kept AS ({_KEPT_ROLLOUTS})
            SELECT kept.rollout_id, kept.problem_id, kept.question, s.step_index, s.text,
                   c.verdict, c.agreed, c.score, c.supporters, c.outcome_implied, o.verdict AS outcome
            FROM kept JOIN steps s USING (rollout_id)
            LEFT JOIN step_consensus c USING (rollout_id, step_index)
            LEFT JOIN outcome_consensus o USING (rollout_id)
            ORDER BY kept.rollout_id, s.step_index
            """
        )
        examples = []
        skipped: Counter[str] = Counter()
        for _, group in itertools.groupby(step_rows, key=lambda r: r["rollout_id"]):
            steps = list(group)
            example = process_example(steps[0], steps, steps[0]["outcome"], run_id)
            if isinstance(example, str):
                skipped[example] += 1
            else:
                examples.append(example)

        store.replace_tables({"preference_pairs": pairs, "process_examples": examples})
    return {"preference_pairs": len(pairs), "process_examples": len(examples), "no_process_example": dict(skipped)}
