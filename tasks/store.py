"""The store: the only module that imports duckdb.

Tables come from `schemas.tables`. Writes go through Arrow in bulk and are
idempotent on each table's primary key, so a rerun or a resumed crash adds no
duplicate rows. Open a Store per task (never share a connection across threads).

Two backends behind one class:
- a DuckDB file (the default): one writer process or any number of read-only
  processes at a time. Opening a file that another process holds waits for it
  (retrying with backoff, up to $RMFORGE_LOCK_TIMEOUT seconds), then raises
  StoreBusy naming the holder. Every process opens per task and closes after,
  so writers and readers take turns instead of failing. Inside the process,
  write transactions on one file take turns too (see `write`).
- a DuckLake, `ducklake:<catalog>[;data=<folder>]` (e.g.
  `ducklake:postgres:dbname=lake host=db.local;data=/shared/lake/`): the catalog
  in PostgreSQL, the data in Parquet files. Many processes write at once and
  every query reads one committed snapshot.

Keys without PRIMARY KEY constraints, in both: DuckDB keeps a constraint in an ART
index, and with content-hash keys every batch touches the whole index, which each
close (checkpoint) then rewrites, so a batch's cost grew with the table (1.5 s to
write 1,000 rows and close at 1M rows, 2.4 s at 4M; bench/reports/soak_store_costs.md).
`write` keeps keys unique instead: it looks up only the batch's own keys, writes each
batch sorted by key (so zone maps let those lookups skip the rest of a table), and
writers take turns, so no two can add the same key.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Sequence, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from rmforge.schemas.records import stable_hash
from rmforge.schemas.tables import TABLES, VIEWS, create_table_sql, missing_column_sql, to_arrow

if TYPE_CHECKING:
    import polars as pl

# Relative to the working directory (a project folder, as for --export data/exports), not to the
# installed package: site-packages is no place for data.
DEFAULT_DB = Path("data") / "rmforge.duckdb"
# Threads of one process share one DuckDB instance per file: two opening (DDL) or one opening
# while another closes the last connection fail with catalog or file-handle conflicts.
_OPEN_CLOSE_LOCK = threading.RLock()
# One write transaction at a time per file in this process (the file lock keeps other processes
# out): a key check and the insert it guards must not interleave with another writer's.
_file_write_locks: dict[str, threading.RLock] = {}
LAKE_PREFIX = "ducklake:"
LOCK_TIMEOUT_ENV = "RMFORGE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 300.0
# Short waits at first (a batch holds the file for milliseconds), capped so that a waiter does not
# sleep through the gaps between another command's batches.
_FIRST_BACKOFF_S = 0.01
_MAX_BACKOFF_S = 0.2

T = TypeVar("T")


class StoreError(RuntimeError):
    """The store cannot be opened or written as asked; the message is one line for the user."""

    user_facing = True  # the CLI prints the message as one line
    exit_code = 1


class NotAStore(StoreError):
    """The store's path holds a file that is not a DuckDB database (a text file, a CSV)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is not an rmforge store: not a DuckDB database file "
                         "(give --db a .duckdb file made by rmforge, or a new path)")


# A DuckDB file's main header: an 8-byte checksum, then these magic bytes.
_DUCKDB_MAGIC = b"DUCK"


def check_store_file(location: "StoreLocation") -> None:
    """Refuse, before any work, a file store whose path holds something other than a DuckDB file."""
    path = location.path
    if path is None or not path.is_file():
        return
    with path.open("rb") as file:
        header = file.read(8 + len(_DUCKDB_MAGIC))
    if header[8:] != _DUCKDB_MAGIC:
        raise NotAStore(path)


class StoreBusy(StoreError):
    """Another process kept the store (file lock, or conflicting lake commits) past the wait limit."""

    exit_code = 75  # EX_TEMPFAIL: try again later


# Catalogs DuckLake keeps in a database server; every other catalog is a local file
# (`ducklake:FILE`, `ducklake:duckdb:FILE`, `ducklake:sqlite:FILE`).
_SERVER_CATALOGS = ("postgres:", "mysql:")
_FILE_CATALOG_SCHEMES = ("duckdb:", "sqlite:")
# A catalog's connection string may hold a password: messages show it masked.
_PASSWORDS = [(re.compile(r"(password=)\S+"), r"\1***"), (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@")]


@dataclass(frozen=True)
class StoreLocation:
    """Where a store lives: a DuckDB file, or a DuckLake `ducklake:<catalog>[;data=<folder>]`.

    One type for both, so that no caller takes a lake's URL for a file path."""

    url: str  # as Store, --db and $RMFORGE_DB take it: the file's path or the lake's URL

    @property
    def is_lake(self) -> bool:
        return self.url.startswith(LAKE_PREFIX)

    @property
    def path(self) -> Path | None:
        """The DuckDB file; None for a lake."""
        return None if self.is_lake else Path(self.url)

    @property
    def lake_catalog(self) -> str | None:
        """What DuckLake attaches as the catalog (`postgres:dbname=...`, a file); None for a file store."""
        return self.url[len(LAKE_PREFIX):].partition(";data=")[0] if self.is_lake else None

    @property
    def lake_data_path(self) -> str | None:
        """The lake's `data=` folder as given (a local folder or an object store URL); None when not given."""
        if not self.is_lake:
            return None
        return self.url.partition(";data=")[2] or None

    @property
    def lake_catalog_file(self) -> Path | None:
        """A lake's catalog when it is a local file; None for a catalog in a server, or a file store."""
        catalog = self.lake_catalog
        if catalog is None or catalog.startswith(_SERVER_CATALOGS):
            return None
        for scheme in _FILE_CATALOG_SCHEMES:
            catalog = catalog.removeprefix(scheme)
        return Path(catalog)

    def exists(self) -> bool:
        """Whether there is a store to read: the file, or a lake's local catalog file. A catalog in
        a server is only known when attached, so that lake counts as there."""
        if not self.is_lake:
            return self.path.is_file()
        catalog_file = self.lake_catalog_file
        return catalog_file is None or catalog_file.is_file()

    @property
    def label(self) -> str:
        """The location for messages: the path, or the lake's URL with any password masked."""
        label = self.url
        for password, masked in _PASSWORDS:
            label = password.sub(masked, label)
        return label

    @property
    def name(self) -> str:
        """A short name without paths or hosts, for what leaves the machine (a dataset card):
        the file's name, `ducklake:<catalog file name>` or `ducklake:postgres:dbname=<name>`."""
        if not self.is_lake:
            return self.path.name
        catalog_file = self.lake_catalog_file
        if catalog_file is not None:
            return LAKE_PREFIX + catalog_file.name
        scheme = self.lake_catalog.partition(":")[0]
        database = re.search(r"\bdbname=(\S+)", self.lake_catalog)
        return f"{LAKE_PREFIX}{scheme}" + (f":dbname={database[1]}" if database else "")

    @property
    def local_folder(self) -> Path:
        """The local folder the store's files sit in, where rmforge writes files about the store
        (run report charts): the file's folder, a lake's catalog file's folder, or the folder
        holding a server-catalog lake's local data folder (beside it, not in it: DuckLake treats
        files it does not know there as orphans to delete). A lake with nothing local: the
        current folder."""
        local_file = self.path or self.lake_catalog_file
        if local_file is not None:
            return local_file.resolve().parent
        data = self.lake_data_path
        if data is not None and "://" not in data:
            return Path(data).resolve().parent
        return Path.cwd()

    def __str__(self) -> str:
        return self.label


def resolve_store(db: str | os.PathLike | None = None) -> StoreLocation:
    """--db, else $RMFORGE_DB, else data/rmforge.duckdb under the working directory."""
    return StoreLocation(os.fspath(db or os.environ.get("RMFORGE_DB") or DEFAULT_DB))


def lock_timeout() -> float:
    """Seconds a command waits for a busy store ($RMFORGE_LOCK_TIMEOUT, default 300)."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if seconds < 0:
        raise ValueError(f"{LOCK_TIMEOUT_ENV}={raw!r} must be >= 0")
    return seconds


def _retry_while_busy(
    attempt: Callable[[], T], is_busy: Callable[[duckdb.Error], bool], why: Callable[[duckdb.Error, float], str]
) -> T:
    """Run `attempt` until it succeeds or raises a non-busy error; StoreBusy once the wait runs out."""
    timeout = lock_timeout()
    deadline = time.monotonic() + timeout
    backoff = _FIRST_BACKOFF_S
    while True:
        try:
            return attempt()
        except duckdb.Error as exc:
            if not is_busy(exc):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreBusy(why(exc, timeout)) from None
            # Jitter keeps two waiting processes from retrying in lockstep.
            time.sleep(min(left, random.uniform(backoff / 2, backoff)))
            backoff = min(backoff * 2, _MAX_BACKOFF_S)


def schema_sql() -> list[str]:
    """The statements that create the store's tables and views."""
    return [create_table_sql(spec) for spec in TABLES.values()] + [view_sql(name) for name in VIEWS]


def view_sql(name: str) -> str:
    return f"CREATE OR REPLACE VIEW {name} AS {VIEWS[name]}"


def view_version(name: str) -> str:
    """Kept as the view's comment, so an open can tell that a view is current without rewriting it."""
    return stable_hash("view", VIEWS[name])


# --- the DuckDB file ---------------------------------------------------------------------------

# DuckDB names the holder ("... held in /usr/bin/python3 (PID 123)"), or only a PID, 0 when it
# could not tell (a lock taken while the holder was still opening the file).
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?:(?P<program>.*?) \(PID (?P<pid>\d+)\)|PID (?P<bare_pid>\d+))")


def _is_file_locked(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and _LOCK_HOLDER.search(str(exc)) is not None


def _lock_holder(message: str) -> str:
    """'PID 123 (rmforge annotate ...)' from DuckDB's lock error and the holder's /proc entry."""
    match = _LOCK_HOLDER.search(message)
    if match is None or match["bare_pid"] == "0":
        return "another process"
    pid, command = match["pid"] or match["bare_pid"], match["program"] or "unknown program"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        command = " ".join(" ".join(argv).split()) or command  # one line, even for `python -c` scripts
    except OSError:  # gone already, or another machine's process on a shared disk
        pass
    if len(command) > 200:
        command = command[:197] + "..."
    return f"PID {pid} ({command})"


def _connect_file(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    check_store_file(StoreLocation(str(path)))  # DuckDB's own error names no store and no fix
    return _retry_while_busy(
        lambda: duckdb.connect(str(path), read_only=read_only),
        _is_file_locked,
        lambda exc, timeout: (
            f"{path} is locked by {_lock_holder(str(exc))}; waited {timeout:g} s "
            f"(set {LOCK_TIMEOUT_ENV} to wait longer)"
        ),
    )


# --- DuckLake ----------------------------------------------------------------------------------

# Every lake write transaction bumps this one row first. DuckLake has no primary keys and lets
# two transactions that only insert commit side by side, so two writers of the same key would
# both insert it; touching a shared row makes their commits conflict instead, and the loser
# replays its writes on the new snapshot, where the winner's rows are visible.
_WRITE_TURN_TABLE = "rmforge_write_turns"
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
    raise StoreError(f"a ducklake store needs the {name} extension for duckdb {version}: "
                       f"pip install {package}=={duckdb.__version__}")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _attach_lake(url: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Load the extensions, attach the lake as `lake` and, for writing, create what is missing."""
    lake = StoreLocation(url)
    catalog, data_path = lake.lake_catalog, lake.lake_data_path
    con = duckdb.connect()
    con.execute(f"LOAD {_sql_str(_extension_path('ducklake'))}")
    if catalog.startswith("postgres:"):
        con.execute(f"LOAD {_sql_str(_extension_path('postgres_scanner'))}")
    options = [f"DATA_PATH {_sql_str(data_path)}"] if data_path else []
    if read_only:
        options.append("READ_ONLY")
    suffix = f" ({', '.join(options)})" if options else ""
    try:
        con.execute(f"ATTACH {_sql_str(LAKE_PREFIX + catalog)} AS lake{suffix}")
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
        f"CREATE TABLE IF NOT EXISTS {_WRITE_TURN_TABLE} (commits BIGINT NOT NULL)",
        f"INSERT INTO {_WRITE_TURN_TABLE} SELECT 0 WHERE NOT EXISTS (FROM {_WRITE_TURN_TABLE})",
    ]

    def attempt() -> None:
        con.execute("BEGIN TRANSACTION")
        for statement in statements:
            con.execute(statement)
        con.execute("COMMIT")  # a conflict ends the transaction here; the retry starts a new one

    _retry_while_busy(attempt, _is_lake_conflict,
                      lambda exc, timeout: f"{lake}: could not create the tables in {timeout:g} s: {exc}")


def _lake_cursor(url: str, read_only: bool) -> duckdb.DuckDBPyConnection:
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


def _is_lake_conflict(exc: duckdb.Error) -> bool:
    return "Transaction conflict" in str(exc)


def _key_match(key: Sequence[str], left: str, right: str) -> str:
    return " AND ".join(f'{left}."{c}" = {right}."{c}"' for c in key)


# --- the store ---------------------------------------------------------------------------------


class Store:
    def __init__(self, db: str | os.PathLike | None = None, *, read_only: bool = False) -> None:
        self.location = resolve_store(db)
        self.is_lake = self.location.is_lake
        # Inside a lake transaction: what to replay if the commit loses to another writer.
        self._journal: list[Callable[[], Any]] | None = None
        self._write_lock: threading.RLock | None = None  # held from begin() to commit()/rollback()/close()
        path = self.location.path
        if path is None:
            self.con = _lake_cursor(self.location.url, read_only)
        elif read_only:
            if not path.exists():
                raise FileNotFoundError(f"no rmforge database at {path} (run `rmforge run` first)")
            self.con = _connect_file(path, read_only=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _OPEN_CLOSE_LOCK:
                self.con = _connect_file(path, read_only=False)
                self._create_missing_schema()

    def _create_missing_schema(self) -> None:
        """Create missing tables and stale views; a store made by an earlier version gains the
        columns its records have gained since (NULL in old rows), so upgrading never needs a
        manual migration. An up-to-date store is left unwritten: then closing it costs nothing."""
        tables = dict(self.execute(
            "SELECT table_name, column_count FROM duckdb_tables() "
            "WHERE database_name = current_database() AND schema_name = 'main'"))
        have: set[tuple[str, str]] = set()
        if any(tables.get(spec.name, len(spec.columns)) != len(spec.columns) for spec in TABLES.values()):
            have = set(self.execute(  # the column list only when some table differs: it is slow to read
                "SELECT table_name, column_name FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = 'main'"))
        views = dict(self.execute(
            "SELECT view_name, comment FROM duckdb_views() "
            "WHERE database_name = current_database() AND schema_name = 'main'"))
        statements = [create_table_sql(spec) for spec in TABLES.values() if spec.name not in tables]
        statements += missing_column_sql(have)
        for name in VIEWS:
            if views.get(name) != view_version(name):
                statements += [view_sql(name), f"COMMENT ON VIEW {name} IS {_sql_str(view_version(name))}"]
        for statement in statements:
            self.execute(statement)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close; an open transaction is rolled back."""
        self._journal = None
        with _OPEN_CLOSE_LOCK:
            self.con.close()
        self._release_write_turn()

    def interrupt(self) -> None:
        """Stop the statement this store is running in another thread (it raises there);
        a store closed meanwhile has nothing to stop."""
        try:
            self.con.interrupt()
        except duckdb.ConnectionException:
            pass

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run a statement and drain its result (DuckDB keeps a connection busy until then)."""
        return self._journaled(lambda: self.con.execute(sql, params or []).fetchall())

    def _journaled(self, step: Callable[[], T]) -> T:
        if self._journal is not None:
            self._journal.append(step)
        return step()

    @property
    def in_transaction(self) -> bool:
        return self._write_lock is not None or self._journal is not None

    def begin(self) -> None:
        """Start a write transaction; in a file, after any other thread's write transaction on it ends."""
        if self.is_lake:
            self.con.execute("BEGIN TRANSACTION")
            self._journal = []
            self._take_write_turn()
            return
        lock = _file_write_locks.setdefault(str(self.location.path.resolve()), threading.RLock())
        lock.acquire()
        self._write_lock = lock
        try:
            self.con.execute("BEGIN TRANSACTION")
        except BaseException:
            self._release_write_turn()
            raise

    def _release_write_turn(self) -> None:
        lock, self._write_lock = self._write_lock, None
        if lock is not None:
            lock.release()

    def rollback(self) -> None:
        self._journal = None
        try:
            self.con.execute("ROLLBACK")
        finally:
            self._release_write_turn()

    def _take_write_turn(self) -> None:
        self.con.execute(f"UPDATE {_WRITE_TURN_TABLE} SET commits = commits + 1")

    def commit(self) -> None:
        """Commit; in a lake, a commit that conflicts with another writer is replayed until it lands."""
        if not self.is_lake:
            try:
                self.con.execute("COMMIT")
            finally:
                self._release_write_turn()
            return
        journal, self._journal = self._journal or [], None
        replaying = False

        def attempt() -> None:
            nonlocal replaying
            if replaying:  # the failed COMMIT ended the transaction: redo it on the newest snapshot
                self.con.execute("BEGIN TRANSACTION")
                self._take_write_turn()
                for step in journal:
                    step()
            replaying = True
            self.con.execute("COMMIT")

        _retry_while_busy(
            attempt,
            _is_lake_conflict,
            lambda exc, timeout: (
                f"{self.location}: commits kept conflicting with other writers for {timeout:g} s "
                f"(set {LOCK_TIMEOUT_ENV} to wait longer): {str(exc).splitlines()[-1]}"
            ),
        )

    # writes
    def write(
        self,
        table: str,
        rows: Sequence[BaseModel] | pa.Table,
        *,
        on_conflict: Literal["ignore", "replace"] = "ignore",
    ) -> int:
        """Bulk insert; rows whose key exists are skipped (ignore) or overwritten (replace).

        Returns the rows written. Outside a transaction the write is one of its own.
        """
        arrow = _keyed_batch(table, rows)
        if arrow.num_rows == 0:
            return 0
        if not self.in_transaction:
            self.begin()
            try:
                written = self.write(table, arrow, on_conflict=on_conflict)
            except BaseException:
                self.rollback()
                raise
            self.commit()
            return written
        return self._journaled(lambda: self._write_keyed(table, arrow, on_conflict))

    def write_children(self, table: str, rows: Sequence[BaseModel], parent: str) -> int:
        """Insert rows (steps) that belong to rows of `parent` (rollouts) written after them in
        this transaction; rows whose key exists are skipped. Returns the rows written.

        A parent and its children are always written in one transaction, so the children of a
        parent that is not stored yet cannot be stored either: only the children of stored
        parents need the key check. It reads the small parent key column, not the child table,
        whose key check would cost a scan that grows with the store.
        """
        arrow = _keyed_batch(table, rows)
        if arrow.num_rows == 0:
            return 0
        if not self.in_transaction:
            raise RuntimeError("write_children runs inside the transaction that writes the parents")
        return self._journaled(lambda: self._write_children(table, arrow, parent))

    def _write_children(self, table: str, arrow: pa.Table, parent: str) -> int:
        (link,) = TABLES[parent].primary_key
        with _registered(self.con, "_incoming", arrow):
            stored = self.con.execute(
                f"SELECT DISTINCT {link} FROM {parent} SEMI JOIN _incoming USING ({link})").to_arrow_table()
        of_stored = pc.is_in(arrow[link], value_set=stored[link])
        written = 0
        if stored.num_rows:
            written += self._write_keyed(table, arrow.filter(of_stored), "ignore")
        with _registered(self.con, "_incoming", arrow.filter(pc.invert(of_stored))):
            written += self._insert_in_key_order(table, "SELECT * FROM _incoming")
        return written

    def replace_tables(self, contents: dict[str, Sequence[BaseModel] | pa.Table]) -> dict[str, int]:
        """Rebuild whole derived tables with these rows, in one transaction, so a reader never
        sees one half-rebuilt; returns the rows written per table."""
        self.begin()
        try:
            for table in contents:
                self.execute(f"DELETE FROM {table}")
            written = {table: self.write(table, rows) for table, rows in contents.items()}
        except BaseException:
            self.rollback()
            raise
        self.commit()
        return written

    def _write_keyed(self, table: str, arrow: pa.Table, on_conflict: str) -> int:
        """The key check: delete the stored rows of the batch's keys (replace), or insert only the
        keys not stored yet (ignore). Both probe the table with the batch's keys alone, and the
        batch goes in sorted by key: its rows lie together, so a later lookup of these keys reads
        only their part of the table, the rest skipped by its min/max statistics."""
        key = TABLES[table].primary_key
        columns = _key_columns(table)
        with _registered(self.con, "_incoming", arrow):
            if on_conflict == "replace":
                self.con.execute(f"DELETE FROM {table} t USING _incoming i WHERE {_key_match(key, 't', 'i')}")
                rows = "SELECT * FROM _incoming"
            else:
                rows = (f"SELECT * FROM _incoming ANTI JOIN "
                        f"(SELECT {columns} FROM {table} SEMI JOIN _incoming USING ({columns})) USING ({columns})")
            return self._insert_in_key_order(table, rows)

    def _insert_in_key_order(self, table: str, rows_sql: str) -> int:
        """INSERT the query's rows sorted by key (a join does not keep the batch's order, and
        stored in key order a batch stays clustered); returns how many."""
        return self.con.execute(
            f"INSERT INTO {table} BY NAME {rows_sql} ORDER BY {_key_columns(table)}").fetchall()[0][0]

    # reads
    def count(self, table: str) -> int:
        return self.execute(f"SELECT count(*) FROM {table}")[0][0]

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """The query's result as an Arrow table."""
        return self.con.sql(query, params=params or None).to_arrow_table()

    def polars(self, query: str, params: Sequence[Any] | None = None) -> "pl.DataFrame":
        """The query's result as a Polars DataFrame."""
        import polars as pl  # only for those who ask: the flows read Arrow

        return pl.from_arrow(self.sql(query, params))

    def table(self, name: str) -> "pl.DataFrame":
        """A whole table or view of the store (`schemas.tables`) as a Polars DataFrame."""
        if name not in TABLES and name not in VIEWS:
            raise ValueError(f"no table or view {name!r} in an rmforge store "
                             f"(tables: {', '.join(TABLES)}; views: {', '.join(VIEWS)})")
        return self.polars(f'SELECT * FROM "{name}"')

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        return self.sql(sql, params).to_pylist()

    def records(self, record: type[BaseModel], sql: str, params: Sequence[Any] | None = None) -> list:
        return [record.model_validate(row) for row in self.rows(sql, params)]

    def counts(self) -> dict[str, int]:
        return {name: self.count(name) for name in TABLES}


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """`table` visible to SQL as `name` for the duration of the block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


def _keyed_batch(table: str, rows: Sequence[BaseModel] | pa.Table) -> pa.Table:
    """A batch for `table` as Arrow, one row per key."""
    spec = TABLES[table]
    arrow = rows if isinstance(rows, pa.Table) else to_arrow(spec, list(rows))
    return _dedupe_on_key(arrow, spec.primary_key)


def _key_columns(table: str) -> str:
    return ", ".join(f'"{c}"' for c in TABLES[table].primary_key)


def _dedupe_on_key(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """Keep the last row per key: the tables have no PRIMARY KEY constraint (see the module
    docstring), so a batch that repeats a key would store it twice."""
    if table.num_rows < 2:
        return table
    indices = pa.array(range(table.num_rows))
    keyed = table.select(list(key)).append_column("_row", indices)
    last = keyed.group_by(list(key)).aggregate([("_row", "max")]).column("_row_max")
    if len(last) == table.num_rows:
        return table
    return table.take(sorted(last.to_pylist()))
