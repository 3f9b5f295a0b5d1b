"""Problem sources: a procedural arithmetic generator and importers.

The generator writes multi-step word problems with exact integer answers and a
reference step chain (difficulty = number of steps). Importers read JSONL/Parquet
files and Hugging Face datasets; malformed records go to quarantine with the
field at fault.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError

from schemas.config import ProblemSourceConfig
from schemas.records import Problem, QuarantineRecord, stable_hash

T = TypeVar("T")

NAMES = ["Mia", "Liam", "Ava", "Noah", "Zara", "Omar", "Lena", "Ravi", "Sofia", "Kenji", "Amara", "Diego"]
ITEMS = ["marbles", "stickers", "apples", "books", "coins", "shells", "pencils", "cookies", "stamps", "cards"]


@dataclass(frozen=True)
class _Operation:
    symbol: str
    sentence: str
    apply: Callable[[int, int], int]
    pick: Callable[[random.Random, int], int | None]  # operand for value, or None if not applicable


def _pick_add(rng: random.Random, value: int) -> int:
    return rng.randint(2, 40)


def _pick_sub(rng: random.Random, value: int) -> int | None:
    return rng.randint(1, value - 1) if value > 2 else None


def _pick_mul(rng: random.Random, value: int) -> int | None:
    return rng.randint(2, 5) if value <= 200 else None


def _pick_div(rng: random.Random, value: int) -> int | None:
    divisors = [k for k in range(2, 10) if value % k == 0 and value // k >= 2]
    return rng.choice(divisors) if divisors else None


OPERATIONS = [
    _Operation("+", "Then {name} gets {k} more {item}.", lambda v, k: v + k, _pick_add),
    _Operation("-", "Then {name} gives {k} {item} to a friend.", lambda v, k: v - k, _pick_sub),
    _Operation("*", "Then the number of {item} {name} has becomes {k} times as large.", lambda v, k: v * k, _pick_mul),
    _Operation(
        "/",
        "Then {name} splits the {item} equally into {k} boxes and keeps just one box.",
        lambda v, k: v // k,
        _pick_div,
    ),
]


def generate_arithmetic_problem(rng: random.Random, n_steps: int) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(5, 60)
    sentences = [f"{name} has {value} {item}."]
    reference = []
    while len(reference) < n_steps:
        op = rng.choice(OPERATIONS)
        operand = op.pick(rng, value)
        if operand is None:
            continue
        result = op.apply(value, operand)
        sentences.append(op.sentence.format(name=name, k=operand, item=item))
        reference.append(f"{value} {op.symbol} {operand} = {result}")
        value = result
    if rng.random() < 0.3:  # some problems end with a price, so answers carry units
        price = rng.randint(2, 9)
        sentences.append(f"Each of the {item} is worth ${price}.")
        question = " ".join(sentences) + f" How many dollars are all of {name}'s {item} worth?"
        reference.append(f"{value} * {price} = {value * price}")
        value *= price
    else:
        question = " ".join(sentences) + f" How many {item} does {name} have now?"
    gold = str(value)
    return Problem(
        problem_id=Problem.make_id(question, gold),
        question=question,
        gold_answer=gold,
        source="generated:arithmetic",
        domain="math",
        difficulty=len(reference),
        reference_steps=reference,
    )


def generate_arithmetic_problems(count: int, seed: int = 0, min_steps: int = 2, max_steps: int = 4) -> list[Problem]:
    if min_steps > max_steps:
        raise ValueError(f"min_steps ({min_steps}) > max_steps ({max_steps})")
    rng = random.Random(seed)
    problems: dict[str, Problem] = {}
    while len(problems) < count:
        problem = generate_arithmetic_problem(rng, rng.randint(min_steps, max_steps))
        problems.setdefault(problem.problem_id, problem)
    return list(problems.values())


# ---------------------------------------------------------------- importers

_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)
_CALCULATOR = re.compile(r"<<[^>]*>>")


def split_gsm8k_answer(answer: str) -> tuple[str, list[str]]:
    """GSM8K answers hold the rationale, then `#### 72`: gold and reference steps."""
    match = _GSM8K_FINAL.search(answer)
    if not match:
        return answer.strip(), []
    rationale = answer[: match.start()]
    steps = [line.strip() for line in rationale.splitlines() if line.strip()]
    return match.group(1).replace(",", "").strip(), steps


@dataclass
class ImportResult:
    problems: list[Problem] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)


def quarantine_record(source: str, ref: str, field_name: str, reason: str, raw: Any, run_id: str) -> QuarantineRecord:
    raw_text = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
    return QuarantineRecord(
        quarantine_id=stable_hash("quarantine", source, ref, reason),
        source=source,
        record_ref=ref,
        field=field_name,
        reason=reason,
        raw=raw_text[:10_000],
        run_id=run_id,
    )


def validation_field(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "record"
    return loc, f"{loc}: {first['msg']}"


def problem_from_record(
    record: dict[str, Any], source: str, question_field: str = "question", answer_field: str = "answer"
) -> Problem:
    """One imported row -> Problem. Raises ValueError naming the field at fault."""
    question = record.get(question_field)
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{question_field}: missing or empty question")
    raw_answer = record.get(answer_field, record.get("gold_answer"))
    gold: str | None
    steps: list[str] = []
    if raw_answer is None:
        gold = None
    elif isinstance(raw_answer, (int, float)):
        gold = str(raw_answer)
    elif isinstance(raw_answer, str):
        gold, steps = split_gsm8k_answer(raw_answer)
        steps = [_CALCULATOR.sub("", s) for s in steps]
    else:
        raise ValueError(f"{answer_field}: expected a string or number, got {type(raw_answer).__name__}")
    given_id = record.get("problem_id") or record.get("id")
    return Problem(
        problem_id=str(given_id) if given_id else Problem.make_id(question, gold),
        question=question.strip(),
        gold_answer=gold,
        source=source,
        domain=record.get("domain", "math"),
        difficulty=record.get("difficulty") if isinstance(record.get("difficulty"), int) else None,
        reference_steps=steps,
    )


def read_records(path: Path) -> list[dict[str, Any] | str]:
    """Rows of a JSONL or Parquet file; unparseable JSONL lines are returned as raw strings."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows: list[dict[str, Any] | str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                rows.append(line.rstrip("\n"))
                continue
            rows.append(value if isinstance(value, dict) else line.rstrip("\n"))
    return rows


def parse_rows(
    rows: Sequence[dict[str, Any] | str], source: str, run_id: str, parse: Callable[[dict[str, Any]], T]
) -> tuple[list[T], list[QuarantineRecord]]:
    """Apply `parse` to each row; rows it rejects are quarantined with the field at fault.

    `parse` raises pydantic's ValidationError, or ValueError("field: reason").
    """
    parsed: list[T] = []
    quarantine: list[QuarantineRecord] = []
    for number, row in enumerate(rows, start=1):
        ref = f"{source}#{number}"
        if not isinstance(row, dict):
            quarantine.append(quarantine_record(source, ref, "record", "not a JSON object", row, run_id))
            continue
        try:
            parsed.append(parse(row))
        except ValidationError as exc:
            field_name, reason = validation_field(exc)
            quarantine.append(quarantine_record(source, ref, field_name, reason, row, run_id))
        except ValueError as exc:
            field_name = str(exc).split(":", 1)[0]
            quarantine.append(quarantine_record(source, ref, field_name, str(exc), row, run_id))
    return parsed, quarantine


def import_problem_rows(
    rows: Sequence[dict[str, Any] | str], source: str, run_id: str, question_field: str, answer_field: str
) -> ImportResult:
    problems, quarantine = parse_rows(
        rows, source, run_id, lambda row: problem_from_record(row, source, question_field, answer_field)
    )
    return ImportResult(problems=problems, quarantine=quarantine)


def load_hf_rows(path: str, split: str) -> list[dict[str, Any]]:
    """A saved dataset folder (save_to_disk), a local data folder/script, or a hub id."""
    import datasets

    if Path(path, "dataset_info.json").exists() or Path(path, "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(path)
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded[split]
    else:
        loaded = datasets.load_dataset(path, split=split)
    return loaded.to_list()


@task(name="load-problems", cache_policy=NO_CACHE)
def load_problems(config: ProblemSourceConfig, run_id: str) -> ImportResult:
    """Problems for a run, from the configured source."""
    if config.kind == "arithmetic":
        return ImportResult(
            problems=generate_arithmetic_problems(config.count, config.seed, config.min_steps, config.max_steps)
        )
    if config.kind == "logic":
        from tasks.logic_problems import generate_logic_problems

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
