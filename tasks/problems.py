"""Load the problems of a run from its configured source (generated or imported), and store them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.problems.arithmetic import generate_arithmetic_problems
from rmforge.problems.problem_import import ImportResult, import_problem_rows
from rmforge.problems.records import NumberedRow, load_hf_rows, read_records
from rmforge.schemas.config import ProblemSourceConfig
from rmforge.store import Store


def concrete_seed(config: ProblemSourceConfig) -> int:
    """The problem seed; `seed: scheduled` is drawn by the generate flow before problems load."""
    if isinstance(config.seed, str):
        raise ValueError(f"problems.seed={config.seed!r} is drawn by the generate flow (resolve_seed), not here")
    return config.seed


@task(name="load-problems", cache_policy=NO_CACHE)
def load_problems(config: ProblemSourceConfig, run_id: str) -> ImportResult:
    """Problems for a run, from the configured source."""
    if config.kind == "arithmetic":
        seed = concrete_seed(config)
        return ImportResult(
            problems=generate_arithmetic_problems(
                config.count, seed, config.min_steps, config.max_steps, config.operations, config.max_number
            )
        )
    if config.kind == "logic":
        from rmforge.problems.logic import generate_logic_problems

        return ImportResult(
            problems=generate_logic_problems(config.count, concrete_seed(config), config.min_steps, config.max_steps)
        )
    if not config.path:
        raise ValueError(f"problems.kind={config.kind!r} needs problems.path")
    if config.kind == "file":
        rows: list[NumberedRow] | list[dict[str, Any]] = read_records(Path(config.path))
        source = f"file:{Path(config.path).name}"
    else:
        rows = list(load_hf_rows(config.path, config.split))
        source = f"hf:{config.path}:{config.split}"
    result = import_problem_rows(rows, source, run_id, config.question_field, config.answer_field)
    result.problems = result.problems[: config.count]
    return result


@task(name="store-problems", cache_policy=NO_CACHE)
def store_problems(db: str, result: ImportResult) -> dict[str, int]:
    with Store(db) as store:
        return {
            "problems": store.write("problems", result.problems),
            "quarantined": store.write("quarantine", result.quarantine),
        }
