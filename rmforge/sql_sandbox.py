"""The sandbox of `rmforge sql` (and of the commands that read the store for the user: `status`,
`report`): the store opened read-only with DuckDB's file access switched off, so a statement can
read the store's tables and nothing else (no COPY TO, read_csv, ATTACH, INSTALL), and one
statement run with its failures said in one line.

No command line here: what is wrong raises `UserError`, which the CLI prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb

from rmforge.checks import StorePath, existing_store
from rmforge.errors import UserError
from rmforge.store import Store

if TYPE_CHECKING:
    import pyarrow as pa


def sandboxed_store(db: StorePath) -> Store:
    """The store opened read-only, with DuckDB's file access switched off: a query can
    read the store's tables and nothing else (no COPY TO, read_csv, ATTACH, INSTALL)."""
    store = Store(existing_store(db), read_only=True)
    if store.location.lake_data_path:  # the lake's own Parquet folder stays readable, nothing else
        store.execute("SET allowed_directories = [?]", [store.location.lake_data_path])
    # DuckDB keeps its spill folder (`<db>.tmp/`) open to queries even with external access
    # off, so COPY TO and read_csv could use it; without spilling there is no such folder.
    store.execute("SET temp_directory = ''")
    store.execute("SET enable_external_access = false")
    store.execute("SET lock_configuration = true")
    return store


def check_statement(statement: str) -> str:
    """A statement to run: not empty (checked before the store is opened)."""
    if not statement.strip():
        raise UserError("empty query")
    return statement


def query(store: Store, statement: str) -> pa.Table:
    """The rows of one statement on a sandboxed store; DuckDB's refusal (read-only, file access
    disabled, a syntax error) or a statement that returns no rows is a UserError."""
    try:
        relation = store.con.sql(statement)
        result = relation.to_arrow_table() if relation is not None else None
    except duckdb.Error as exc:  # the message says what is wrong with the statement
        raise UserError(str(exc)) from None
    if result is None:
        raise UserError("the statement returned no rows; `rmforge sql` is for queries")
    return result
