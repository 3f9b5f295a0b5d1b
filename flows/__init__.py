"""Prefect flows: one per pipeline stage, plus the end-to-end `pipeline`."""

from __future__ import annotations

import logging
from typing import Any


def run_logger() -> Any:
    """The flow run's logger (shown in the Prefect UI), or the `rmforge.runs` logger outside a run."""
    # Imported here: importing `rmforge.flows` does not load Prefect.
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("rmforge.runs")
