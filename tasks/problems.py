"""Load the problems of a run from its configured source (generated or imported)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.problems.arithmetic import generate_arithmetic_problems
from rmforge.problems.problem_import import ImportResult, import_problem_rows
from rmforge.problems.records import load_hf_rows, read_records
from rmforge.schemas.config import ProblemSourceConfig


@task(name="load-problems", cache_policy=NO_CACHE)
def load_problems(config: ProblemSourceConfig, run_id: str) -> ImportResult:
    """Problems for a run, from the configured source."""
    if config.kind == "arithmetic":
        return ImportResult(
            problems=generate_arithmetic_problems(
                config.count, config.seed, config.min_steps, config.max_steps, config.operations, config.max_number)
        )
    if config.kind == "logic":
        from rmforge.problems.logic import generate_logic_problems

        return ImportResult(
            problems=generate_logic_problems(config.count, config.seed, config.min_steps, config.max_steps)
        )
    if not config.path:
        raise ValueError(f"problems.kind={config.kind!r} needs problems.path")
    if config.kind == "file":
        rows: list[dict[str, Any] | str] = read_records(Path(config.path))
        source = f"file:{Path(config.path).name}"
    else:
        rows = list(load_hf_rows(config.path, config.split))
        source = f"hf:{config.path}:{config.split}"
    result = import_problem_rows(rows, source, run_id, config.question_field, config.answer_field)
    result.problems = result.problems[: config.count]
    return result
