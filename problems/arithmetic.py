"""A procedural generator of multi-step arithmetic word problems.

Each problem has an exact integer answer and a reference step chain (difficulty =
number of steps). Pure functions: no Prefect, no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from schemas.records import Problem


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
