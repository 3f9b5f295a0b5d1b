"""What the store raises when it cannot be opened or written as asked.

Each message is one line for the user: the command line prints it without a traceback and exits
with the error's `exit_code` (rmforge.console).
"""

from __future__ import annotations

from pathlib import Path

from rmforge.schemas.errors import UserError


class StoreError(UserError, RuntimeError):
    """The store cannot be opened or written as asked; the message is one line for the user."""


class NotAStore(StoreError):
    """The store's path holds a file that is not a DuckDB database (a text file, a CSV)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path} is not an rmforge store: not a DuckDB database file "
            "(give --db a .duckdb file made by rmforge, or a new path)"
        )


class StoreBusy(StoreError):
    """The store cannot be had now: another process kept it (a DuckDB file's lock, or lake commits
    that kept conflicting) past the wait limit (rmforge.store.locking), or the review app could not
    open it for a request (its cause, when there is one, says why). Try again later."""

    exit_code = 75  # EX_TEMPFAIL: try again later
