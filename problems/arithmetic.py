"""A procedural generator of multi-step arithmetic word problems.

Each problem has an exact integer answer and a reference step chain (difficulty =
number of steps). Pure functions: no Prefect, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rmforge.schemas.records import Problem

NAMES = ["Mia", "Liam", "Ava", "Noah", "Zara", "Omar", "Lena", "Ravi", "Sofia", "Kenji", "Amara", "Diego"]
ITEMS = ["marbles", "stickers", "apples", "books", "coins", "shells", "pencils", "cookies", "stamps", "cards"]


@dataclass(frozen=True)
class _Operation:
    symbol: str
    sentence: str
    apply: Callable[[int, int], int]
    # The operand for the current value (operands added stay <= max_number), or None if not applicable.
    pick: Callable[[random.Random, int, int], int | None]


def _pick_add(rng: random.Random, value: int, max_number: int) -> int:
    return rng.randint(2, min(40, max_number))


def _pick_sub(rng: random.Random, value: int, max_number: int) -> int | None:
    return rng.randint(1, value - 1) if value > 2 else None


def _pick_mul(rng: random.Random, value: int, max_number: int) -> int | None:
    return rng.randint(2, 5) if value <= 200 else None


def _pick_div(rng: random.Random, value: int, max_number: int) -> int | None:
    divisors = [k for k in range(2, 10) if value % k == 0 and value // k >= 2]
    return rng.choice(divisors) if divisors else None


OPERATIONS: list[_Operation] = [
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


OPERATION_SYMBOLS: tuple[str, ...] = tuple(op.symbol for op in OPERATIONS)
# Draws in a row that found no applicable operation before a problem is abandoned.
_MAX_MISSES = 64


def generate_arithmetic_problem(
    rng: random.Random, n_steps: int, operations: Sequence[str] = OPERATION_SYMBOLS, max_number: int = 60
) -> Problem | None:
    """One problem of `n_steps` operations drawn from `operations`; the starting number and any
    added number are at most `max_number`. A price step (a product) is appended only when `*` is
    allowed. None when no allowed operation applies to the value reached (e.g. only `/` and a prime)."""
    allowed = [op for op in OPERATIONS if op.symbol in operations]
    if not allowed:
        raise ValueError(f"operations {list(operations)} name none of {list(OPERATION_SYMBOLS)}")
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(min(5, max_number), max_number)
    sentences = [f"{name} has {value} {item}."]
    reference: list[str] = []
    misses = 0
    while len(reference) < n_steps:
        op = rng.choice(allowed)
        operand = op.pick(rng, value, max_number)
        if operand is None:
            misses += 1
            if misses > _MAX_MISSES:
                return None
            continue
        misses = 0
        result = op.apply(value, operand)
        sentences.append(op.sentence.format(name=name, k=operand, item=item))
        reference.append(f"{value} {op.symbol} {operand} = {result}")
        value = result
    if "*" in operations and rng.random() < 0.3:  # some problems end with a price, so answers carry units
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


def generate_arithmetic_problems(
    count: int,
    seed: int = 0,
    min_steps: int = 2,
    max_steps: int = 4,
    operations: Sequence[str] = OPERATION_SYMBOLS,
    max_number: int = 60,
) -> list[Problem]:
    if min_steps > max_steps:
        raise ValueError(f"min_steps ({min_steps}) > max_steps ({max_steps})")
    rng = random.Random(seed)
    problems: dict[str, Problem] = {}
    # Small settings (`max_number` 3, one step) allow only a few distinct problems: stop, not loop.
    attempts = 0
    while len(problems) < count and attempts < 100 * count:
        attempts += 1
        problem = generate_arithmetic_problem(rng, rng.randint(min_steps, max_steps), operations, max_number)
        if problem is not None:
            problems.setdefault(problem.problem_id, problem)
    if len(problems) < count:
        raise ValueError(
            f"only {len(problems)} distinct problems of {count} with operations {list(operations)}, "
            f"max_number {max_number} and {min_steps}-{max_steps} steps"
        )
    return list(problems.values())
