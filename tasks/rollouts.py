"""Rollouts: sample solutions from a generator, or import existing ones.

Rollout ids are content hashes of (problem, generator, sampling, sample index),
so a rerun regenerates nothing it already has, and a crashed run resumes at the
first problem that lacks its samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.annotators.base import AnnotationInput
from rmforge.annotators.human import HumanAnnotator
from rmforge.generators import load_generator
from rmforge.generators.base import PROMPT_TOO_LONG
from rmforge.generators.prompts import solution_request
from rmforge.problems.labelled_import import (
    LabelledImport,
    parse_labelled_rows,
    read_gold_answers,
    sibling_gold_answers,
)
from rmforge.problems.records import NumberedRow, iter_record_chunks, quarantine_record
from rmforge.problems.rollout_import import (
    RolloutImport,
    parse_rollout_rows,
    problem_mismatch,
    rollout_mismatch,
    step_texts_by_rollout,
)
from rmforge.schemas.config import GeneratorConfig, SamplingConfig, StepSplitConfig
from rmforge.schemas.records import OutcomeLabel, Problem, Rollout, Step, StepLabel, stable_hash
from rmforge.store import Store
from rmforge.tasks.steps import steps_for


def rollout_id(problem_id: str, generator: GeneratorConfig, sampling: SamplingConfig, index: int) -> str:
    sampling_key = sampling.model_dump(exclude={"n"})
    return stable_hash("rollout", problem_id, generator.backend, generator.model, sampling_key, index)


def missing_problems(
    db: str, problems: Sequence[Problem], generator: GeneratorConfig, sampling: SamplingConfig
) -> list[Problem]:
    """Problems that do not yet have all `sampling.n` rollouts from this generator."""
    wanted = {
        rollout_id(p.problem_id, generator, sampling, i): p.problem_id for p in problems for i in range(sampling.n)
    }
    with Store(db) as store:
        have = {
            row["rollout_id"]
            for row in store.rows(
                "SELECT rollout_id FROM rollouts WHERE rollout_id IN (SELECT UNNEST(?))", [list(wanted)]
            )
        }
    incomplete = {pid for rid, pid in wanted.items() if rid not in have}
    return [p for p in problems if p.problem_id in incomplete]


def sample_rollouts(
    problems: Sequence[Problem], generator: GeneratorConfig, sampling: SamplingConfig, run_id: str
) -> list[Rollout]:
    backend = load_generator(generator)
    requests = [solution_request(p.question, p.domain) for p in problems]
    outputs = backend.generate(requests, sampling)
    sampling_json = sampling.model_dump_json()
    return [
        Rollout(
            rollout_id=rollout_id(problem.problem_id, generator, sampling, index),
            problem_id=problem.problem_id,
            response=completion.text,
            model=generator.model,
            generator=generator.backend,
            sampling=sampling_json,
            sample_index=index,
            num_tokens=completion.num_tokens,
            finish_reason=completion.finish_reason,
            cumulative_logprob=completion.cumulative_logprob,
            run_id=run_id,
        )
        for problem, completions in zip(problems, outputs, strict=True)
        for index, completion in enumerate(completions)
    ]


@task(name="generate-rollouts", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def generate_rollouts(
    db: str,
    problems: list[Problem],
    generator: GeneratorConfig,
    sampling: SamplingConfig,
    run_id: str,
    steps: StepSplitConfig | None = None,
) -> dict[str, int]:
    """Sample and store rollouts (with their steps) for one batch of problems.

    A problem whose prompt alone overflows the model's context yields no rollout: it is
    quarantined with that reason instead of being stored as an empty, "wrong" answer.
    """
    todo = missing_problems(db, problems, generator, sampling)
    if not todo:
        return {"rollouts": 0, "steps": 0, "quarantined": 0}
    sampled = sample_rollouts(todo, generator, sampling, run_id)
    overflow = {r.problem_id for r in sampled if r.finish_reason == PROMPT_TOO_LONG}
    quarantine = [
        quarantine_record(
            f"generate:{generator.model}",
            p.problem_id,
            "question",
            f"the prompt exceeds the model context (max_model_len {generator.max_model_len})",
            p.question,
            run_id,
        )
        for p in todo
        if p.problem_id in overflow
    ]
    with Store(db) as store:
        written = store_rollouts(
            store, [r for r in sampled if r.problem_id not in overflow], [], steps or StepSplitConfig()
        )
        written["quarantined"] = store.write("quarantine", quarantine)
    return written


# ------------------------------------------------------------------ import


def refuse_stored_conflicts(store: Store, parsed: RolloutImport, source: str, run_id: str) -> None:
    """Quarantine rollouts whose rollout_id is stored with another response, problem, model or steps.

    The store keeps the first record of an id: writing this one would skip it without a word
    (an earlier import, or an earlier chunk of this file, stored the other).
    """
    stored = {
        r.rollout_id: r
        for r in store.records(
            Rollout,
            "SELECT * FROM rollouts WHERE rollout_id IN (SELECT UNNEST(?))",
            [[r.rollout_id for r in parsed.rollouts]],
        )
    }
    if not stored:
        return
    given_steps = step_texts_by_rollout([s for s in parsed.steps if s.rollout_id in stored])
    stored_steps = {
        row["rollout_id"]: row["texts"]
        for row in store.rows(
            "SELECT rollout_id, list(text ORDER BY step_index) AS texts FROM steps "
            "WHERE rollout_id IN (SELECT UNNEST(?)) GROUP BY rollout_id",
            [list(given_steps)],
        )
    }
    refused: set[str] = set()
    for rollout in parsed.rollouts:
        rid = rollout.rollout_id
        mismatch = rid in stored and rollout_mismatch(stored[rid], stored_steps.get(rid), rollout, given_steps.get(rid))
        if mismatch:
            refused.add(rid)
            parsed.quarantine.append(
                quarantine_record(
                    source,
                    f"{source}#{parsed.record_numbers[rid]}",
                    "rollout_id",
                    f"rollout_id: {rid!r} is stored with a different {mismatch}",
                    {**rollout.model_dump(mode="json"), "steps": given_steps.get(rid)},
                    run_id,
                )
            )
    drop_rollouts(parsed, refused)


def refuse_stored_mismatches(store: Store, parsed: RolloutImport, source: str, run_id: str) -> None:
    """Quarantine rollouts whose problem_id is stored with another question or gold answer.

    Attaching them would grade them against the stored problem, silently mislabelling them.
    """
    stored = {
        p.problem_id: p
        for p in store.records(
            Problem,
            "SELECT * FROM problems WHERE problem_id IN (SELECT UNNEST(?))",
            [[p.problem_id for p in parsed.problems]],
        )
    }
    refused: dict[str, str] = {}
    for problem in parsed.problems:
        mismatch = stored.get(problem.problem_id) and problem_mismatch(stored[problem.problem_id], problem)
        if mismatch:
            refused[problem.problem_id] = f"{mismatch}: differs from the stored problem {problem.problem_id!r}"
    if not refused:
        return
    for rollout in parsed.rollouts:
        if rollout.problem_id in refused:
            parsed.quarantine.append(
                quarantine_record(
                    source,
                    f"{source}#rollout {rollout.rollout_id}",
                    refused[rollout.problem_id].split(":")[0],
                    refused[rollout.problem_id],
                    rollout.model_dump(mode="json"),
                    run_id,
                )
            )
    drop_rollouts(parsed, {r.rollout_id for r in parsed.rollouts if r.problem_id in refused})


def drop_rollouts(parsed: RolloutImport, refused: set[str]) -> None:
    """Leave the refused rollouts out of an import: them, their steps, and problems only they named."""
    parsed.rollouts = [r for r in parsed.rollouts if r.rollout_id not in refused]
    parsed.steps = [s for s in parsed.steps if s.rollout_id not in refused]
    named = {r.problem_id for r in parsed.rollouts}
    parsed.problems = [p for p in parsed.problems if p.problem_id in named]


def import_outcomes(parsed: RolloutImport, new_rollouts: int) -> dict[str, int]:
    """How a chunk's rows ended: identical repeats (of an earlier row or a stored rollout) and rows read."""
    return {
        "identical_repeats": parsed.identical_repeats + len(parsed.rollouts) - new_rollouts,
        "rows_read": len(parsed.rollouts) + parsed.identical_repeats + len(parsed.quarantine),
    }


def imported_nothing(summary: dict) -> bool:
    """Whether an import read rows and quarantined every one (a file of another format): none was
    stored and none repeats a stored rollout. Counts the rows refused this time, including those
    quarantined by an earlier import of the same file."""
    refused = summary["rows_read"] - summary["identical_repeats"] - summary["rollouts"]
    return summary["rows_read"] > 0 and refused == summary["rows_read"]


def most_common_reason(reasons: Counter[str]) -> str | None:
    return reasons.most_common(1)[0][0] if reasons else None


def store_rollouts(
    store: Store, rollouts: list[Rollout], given_steps: list[Step], config: StepSplitConfig
) -> dict[str, int]:
    """Rollouts and their steps in one transaction: a stored rollout always has its steps.

    Steps given with a rollout are kept exactly; the others are split by `config`.
    """
    have_steps = {s.rollout_id for s in given_steps}
    steps = given_steps + steps_for([r for r in rollouts if r.rollout_id not in have_steps], config)
    with store.transaction():
        return {
            "steps": store.write_children("steps", steps, parent="rollouts"),
            "rollouts": store.write("rollouts", rollouts),
        }


# Rows parsed and written per transaction: memory follows this, not the file's size, and a
# crash loses at most one chunk's transaction (the rerun skips what was stored).
IMPORT_CHUNK_ROWS = 5_000


def import_in_chunks(
    path: Path,
    import_chunk: Callable[[list[NumberedRow]], dict[str, int]],
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Stream a file through `import_chunk` a chunk at a time; the summed counts.

    `on_rows(n)`: the records up to number n (a line of a JSONL file) are stored.
    """
    totals: Counter[str] = Counter()
    for chunk in iter_record_chunks(path, IMPORT_CHUNK_ROWS):
        totals.update(import_chunk(chunk))
        if on_rows is not None:
            on_rows(chunk[-1][0])
    return dict(totals)


@task(name="import-rollouts", cache_policy=NO_CACHE)
def import_rollouts(
    db: str,
    path: str,
    run_id: str,
    steps: StepSplitConfig | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, int | str | None]:
    """Read a JSONL/JSON/Parquet file of rollouts into the store (idempotent), in chunks."""
    file = Path(path)
    source = f"file:{file.name}"
    reasons: Counter[str] = Counter()  # why rows were quarantined, for a file none of whose rows fit

    def import_chunk(rows: list[NumberedRow]) -> dict[str, int]:
        parsed = parse_rollout_rows(rows, source, run_id)
        with Store(db) as store:
            refuse_stored_conflicts(store, parsed, source, run_id)
            refuse_stored_mismatches(store, parsed, source, run_id)
            problems = store.write("problems", parsed.problems)
            written = store_rollouts(store, parsed.rollouts, parsed.steps, steps or StepSplitConfig())
            quarantined = store.write("quarantine", parsed.quarantine)
        reasons.update(q.reason for q in parsed.quarantine)
        return {
            "problems": problems,
            "rollouts": written["rollouts"],
            "new_steps": written["steps"],
            "quarantined": quarantined,
            **import_outcomes(parsed, written["rollouts"]),
        }

    counts = import_in_chunks(file, import_chunk, on_rows)
    return {**counts, "top_quarantine_reason": most_common_reason(reasons)}


def human_labels(parsed: LabelledImport, run_id: str) -> tuple[list[StepLabel], list[OutcomeLabel]]:
    """The human verdicts of an import as `human` step and outcome labels, one reviewer each."""
    problems = {p.problem_id: p for p in parsed.problems}
    steps = step_texts_by_rollout(parsed.steps)
    reviewers: dict[str, HumanAnnotator] = {}
    step_labels: list[StepLabel] = []
    outcome_labels: list[OutcomeLabel] = []
    for rollout in parsed.rollouts:
        name = parsed.reviewers[rollout.rollout_id]
        human = reviewers.setdefault(name, HumanAnnotator({"reviewer": name}))
        item = AnnotationInput(problem=problems[rollout.problem_id], rollout=rollout, steps=steps[rollout.rollout_id])
        step_labels.extend(
            human.step_label(item, index, verdict, run_id, reason=f"{name}: human label")
            for index, verdict in enumerate(parsed.step_verdicts[rollout.rollout_id])
        )
        if rollout.rollout_id in parsed.outcomes:
            correct = parsed.outcomes[rollout.rollout_id]
            outcome_labels.append(
                human.outcome_label(item, "correct" if correct else "incorrect", run_id, reason=f"{name}: final answer")
            )
    return step_labels, outcome_labels


@task(name="import-labelled", cache_policy=NO_CACHE)
def import_labelled(
    db: str,
    path: str,
    fmt: str,
    run_id: str,
    gold_path: str | None = None,
    neutral: str = "correct",
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, int | str | None]:
    """Human-labelled solutions (ProcessBench / PRM800K) into the store, labels as annotator `human`."""
    file = Path(path)
    gold_file = Path(gold_path) if gold_path else sibling_gold_answers(file)
    gold = read_gold_answers(gold_file) if gold_file else None
    source = f"{fmt}:{file.name}"
    with_gold: set[str] = set()  # problems with a gold answer, counted once however many chunks name them
    reasons: Counter[str] = Counter()  # why rows were quarantined, for a file none of whose rows fit

    def import_chunk(rows: list[NumberedRow]) -> dict[str, int]:
        parsed = parse_labelled_rows(rows, source, run_id, fmt, gold=gold, neutral=neutral)
        with Store(db) as store:
            refuse_stored_conflicts(store, parsed, source, run_id)
            refuse_stored_mismatches(store, parsed, source, run_id)
            step_labels, outcome_labels = human_labels(parsed, run_id)
            with store.transaction():
                written = {
                    "problems": store.write("problems", parsed.problems),
                    "new_steps": store.write_children("steps", parsed.steps, parent="rollouts"),
                    "rollouts": store.write("rollouts", parsed.rollouts),
                    "human_step_labels": store.write("step_labels", step_labels),
                    "human_outcome_labels": store.write("outcome_labels", outcome_labels),
                    "quarantined": store.write("quarantine", parsed.quarantine),
                }
        with_gold.update(p.problem_id for p in parsed.problems if p.gold_answer is not None)
        reasons.update(q.reason for q in parsed.quarantine)
        written.update(import_outcomes(parsed, written["rollouts"]))
        return written

    counts = import_in_chunks(file, import_chunk, on_rows)
    return {**counts, "gold_answers": len(with_gold), "top_quarantine_reason": most_common_reason(reasons)}
