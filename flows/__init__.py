"""Prefect flows: one per pipeline stage, plus the end-to-end `pipeline`."""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence, TypeVar

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def run_logger() -> Any:
    """The flow run's logger (shown in the Prefect UI), or the `rmforge.runs` logger outside a run."""
    # Imported here: importing `rmforge.flows` (for `chunks`) does not load Prefect.
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("rmforge.runs")
