"""The DuckLake backend: `ducklake:<catalog>[;data=<folder>]` (e.g.
`ducklake:postgres:dbname=lake host=db.local;data=/shared/lake/`), the catalog in PostgreSQL (or a
local file), the data in Parquet files. Many processes write at once and every query reads one
committed snapshot.

DuckLake has no primary keys and lets two transactions that only insert commit side by side, so
every write transaction first bumps one shared row (`take_write_turn`): two writers' commits then
conflict, and the loser replays its writes on the new snapshot (Store.commit), where the winner's
rows are visible.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import duckdb

from rmforge.store.errors import StoreError
from rmforge.store.location import LAKE_PREFIX, StoreLocation
from rmforge.store.locking import retry_while_busy
from rmforge.store.schema import schema_sql, sql_string

# The shared row every lake write transaction bumps first (see above).
WRITE_TURN_TABLE = "rmforge_write_turns"
# One attached lake per (url, mode) per process: loading the extensions and attaching the
# catalog costs about a second, a cursor on it next to nothing.
_lakes: dict[tuple[str, bool, int], duckdb.DuckDBPyConnection] = {}
_lakes_lock = threading.Lock()


def _extension_path(name: str) -> str:
    """The extension file shipped by PyPI's duckdb-extension-NAME (DuckDB's own INSTALL needs the network)."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    version = f"v{duckdb.__version__}"
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "extensions" / version / f"{name}.duckdb_extension"
        if path.exists():
            return str(path)
    package = "duckdb-extension-" + name.replace("_", "-")
    raise StoreError(
        f"a ducklake store needs the {name} extension for duckdb {version}: pip install {package}=={duckdb.__version__}"
    )


def _attach_lake(url: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Load the extensions, attach the lake as `lake` and, for writing, create what is missing."""
    lake = StoreLocation(url)
    catalog, data_path = lake.lake_catalog, lake.lake_data_path
    if catalog is None:
        raise ValueError(f"{lake} is no ducklake store")
    con = duckdb.connect()
    con.execute(f"LOAD {sql_string(_extension_path('ducklake'))}")
    if catalog.startswith("postgres:"):
        con.execute(f"LOAD {sql_string(_extension_path('postgres_scanner'))}")
    options = [f"DATA_PATH {sql_string(data_path)}"] if data_path else []
    if read_only:
        options.append("READ_ONLY")
    suffix = f" ({', '.join(options)})" if options else ""
    try:
        con.execute(f"ATTACH {sql_string(LAKE_PREFIX + catalog)} AS lake{suffix}")
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"cannot open the lake {lake}: {str(exc).splitlines()[0]}") from None
    con.execute("USE lake")
    if not read_only:
        _create_lake_tables(con, lake)
    return con


def _create_lake_tables(con: duckdb.DuckDBPyConnection, lake: StoreLocation) -> None:
    """Several workers may create the tables at once: the losers' commits conflict and retry."""
    statements = schema_sql() + [
        f"CREATE TABLE IF NOT EXISTS {WRITE_TURN_TABLE} (commits BIGINT NOT NULL)",
        f"INSERT INTO {WRITE_TURN_TABLE} SELECT 0 WHERE NOT EXISTS (FROM {WRITE_TURN_TABLE})",
    ]

    def attempt() -> None:
        # On the bare connection, before any Store exists: not Store.transaction().
        con.execute("BEGIN TRANSACTION")
        for statement in statements:
            con.execute(statement)
        con.execute("COMMIT")  # a conflict ends the transaction here; the retry starts a new one

    retry_while_busy(
        attempt, is_lake_conflict, lambda exc, timeout: f"{lake}: could not create the tables in {timeout:g} s: {exc}"
    )


def lake_cursor(url: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A cursor on this process's attachment of the lake (attached on first use)."""
    key = (url, read_only, os.getpid())  # a forked child must not reuse its parent's connection
    writable = (url, False, os.getpid())
    with _lakes_lock:
        if read_only and writable in _lakes and StoreLocation(url).lake_catalog_file is not None:
            # DuckDB opens a file once per process: a catalog file attached for writing serves reads too.
            key = writable
        elif key not in _lakes:
            _lakes[key] = _attach_lake(url, read_only)
        cursor = _lakes[key].cursor()
    cursor.execute("USE lake")
    return cursor


def is_lake_conflict(exc: duckdb.Error) -> bool:
    return "Transaction conflict" in str(exc)


def take_write_turn(con: duckdb.DuckDBPyConnection) -> None:
    """Bump the shared row, first thing in a write transaction (see above)."""
    con.execute(f"UPDATE {WRITE_TURN_TABLE} SET commits = commits + 1")
