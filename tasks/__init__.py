"""Prefect tasks: the batch units the flows (flows/) run, one module per stage."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """`items` in consecutive lists of at most `size`: the batches a flow or a task works through."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
