"""Rollouts: sample solutions from a generator, or import existing ones.

Rollout ids are content hashes of (problem, generator, sampling, sample index),
so a rerun regenerates nothing it already has, and a crashed run resumes at the
first problem that lacks its samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from generators import load_generator
from generators.prompts import solution_request
from schemas.config import GeneratorConfig, SamplingConfig
from schemas.records import Problem, QuarantineRecord, Rollout, stable_hash
from tasks.problems import parse_rows, read_records
from tasks.store import Store


def rollout_id(problem_id: str, generator: GeneratorConfig, sampling: SamplingConfig, index: int) -> str:
    sampling_key = sampling.model_dump(exclude={"n"})
    return stable_hash("rollout", problem_id, generator.backend, generator.model, sampling_key, index)


def missing_problems(
    db: str, problems: Sequence[Problem], generator: GeneratorConfig, sampling: SamplingConfig
) -> list[Problem]:
    """Problems that do not yet have all `sampling.n` rollouts from this generator."""
    wanted = {
        rollout_id(p.problem_id, generator, sampling, i): p.problem_id
        for p in problems
        for i in range(sampling.n)
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
    db: str, problems: list[Problem], generator: GeneratorConfig, sampling: SamplingConfig, run_id: str
) -> int:
    """Sample and store rollouts for one batch of problems; returns rows added."""
    todo = missing_problems(db, problems, generator, sampling)
    if not todo:
        return 0
    rollouts = sample_rollouts(todo, generator, sampling, run_id)
    with Store(db) as store:
        return store.write("rollouts", rollouts)


# ------------------------------------------------------------------ import

@dataclass
class RolloutImport:
    problems: list[Problem] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)


_REQUIRED = ("problem_id", "question", "response")


def _rollout_from_row(row: dict[str, Any], run_id: str) -> tuple[Problem, Rollout]:
    for name in _REQUIRED:
        value = row.get(name)
        if not isinstance(value, str) or (name != "response" and not value.strip()):
            raise ValueError(f"{name}: missing or not a string")
    gold = row.get("gold_answer")
    if gold is not None and not isinstance(gold, (str, int, float)):
        raise ValueError(f"gold_answer: expected a string or number, got {type(gold).__name__}")
    problem = Problem(
        problem_id=row["problem_id"],
        question=row["question"],
        gold_answer=None if gold is None else str(gold),
        source=str(row.get("source") or "import"),
        domain=row.get("domain") or "math",
    )
    model = str(row.get("model") or "unknown")
    rollout = Rollout(
        rollout_id=str(row.get("rollout_id") or stable_hash("import", problem.problem_id, model, row["response"])),
        problem_id=problem.problem_id,
        response=row["response"],
        model=model,
        generator="import",
        finish_reason=row.get("finish_reason"),
        num_tokens=row.get("num_tokens"),
        run_id=run_id,
    )
    return problem, rollout


def parse_rollout_rows(rows: Sequence[dict[str, Any] | str], source: str, run_id: str) -> RolloutImport:
    """Validate imported rows; bad ones are quarantined with the field at fault."""
    seen_problems: dict[str, Problem] = {}

    def parse(row: dict[str, Any]) -> Rollout:
        problem, rollout = _rollout_from_row(row, run_id)
        known = seen_problems.setdefault(problem.problem_id, problem)
        if known.question != problem.question:
            raise ValueError(f"question: differs from an earlier row with problem_id {problem.problem_id!r}")
        return rollout

    rollouts, quarantine = parse_rows(rows, source, run_id, parse)
    return RolloutImport(problems=list(seen_problems.values()), rollouts=rollouts, quarantine=quarantine)


@task(name="import-rollouts", cache_policy=NO_CACHE)
def import_rollouts(db: str, path: str, run_id: str) -> dict[str, int]:
    """Read a JSONL/Parquet file of rollouts into the store (idempotent)."""
    file = Path(path)
    parsed = parse_rollout_rows(read_records(file), f"file:{file.name}", run_id)
    with Store(db) as store:
        return {
            "problems": store.write("problems", parsed.problems),
            "rollouts": store.write("rollouts", parsed.rollouts),
            "quarantined": store.write("quarantine", parsed.quarantine),
            "rows_read": len(parsed.rollouts) + len(parsed.quarantine),
        }

