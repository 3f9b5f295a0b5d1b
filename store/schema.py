"""The store's tables and views in DuckDB: the statements that create them, and those that bring
a store made by an earlier rmforge up to date. What the tables and views are is schemas.tables
(TABLES, VIEWS); this module only turns that into DDL.
"""

from __future__ import annotations

from collections.abc import Callable

from rmforge.schemas.records import stable_hash
from rmforge.schemas.tables import TABLES, VIEWS, create_table_sql, missing_column_sql

# Runs a query and returns its rows (Store.execute).
Query = Callable[[str], list[tuple]]


def sql_string(value: str) -> str:
    """`value` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def schema_sql() -> list[str]:
    """The statements that create the store's tables and views."""
    return [create_table_sql(spec) for spec in TABLES.values()] + [view_sql(name) for name in VIEWS]


def view_sql(name: str, *, temporary: bool = False) -> str:
    return f"CREATE OR REPLACE {'TEMP ' if temporary else ''}VIEW {name} AS {VIEWS[name]}"


def view_version(name: str) -> str:
    """Kept as the view's comment, so an open can tell that a view is current without rewriting it."""
    return stable_hash("view", VIEWS[name])


def _stored_views(query: Query) -> dict[str, str | None]:
    """The store's own views (not this connection's temporary ones), each with its comment."""
    return dict(
        query(
            "SELECT view_name, comment FROM duckdb_views() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        )
    )


def upgrade_sql(query: Query) -> list[str]:
    """For a store opened for writing: create missing tables and stale views; a store made by an
    earlier version gains the columns its records have gained since (NULL in old rows), so
    upgrading never needs a manual migration. Nothing for an up-to-date store: then closing it
    costs nothing."""
    tables = dict(
        query(
            "SELECT table_name, column_count FROM duckdb_tables() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        )
    )
    have: set[tuple[str, str]] = set()
    if any(tables.get(spec.name, len(spec.columns)) != len(spec.columns) for spec in TABLES.values()):
        have = set(
            query(  # the column list only when some table differs: it is slow to read
                "SELECT table_name, column_name FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = 'main'"
            )
        )
    views = _stored_views(query)
    statements = [create_table_sql(spec) for spec in TABLES.values() if spec.name not in tables]
    statements += missing_column_sql(have)
    for name in VIEWS:
        if views.get(name) != view_version(name):
            statements += [view_sql(name), f"COMMENT ON VIEW {name} IS {sql_string(view_version(name))}"]
    return statements


def missing_view_sql(query: Query) -> list[str]:
    """For a store opened read-only: the views it lacks (made by an earlier version and not opened
    for writing since), as temporary views of this connection alone, so that queries written
    against the views work on it too. A read-only store cannot be changed; the first open for
    writing adds them for good."""
    views = _stored_views(query)
    return [view_sql(name, temporary=True) for name in VIEWS if name not in views]
