"""The Store: rmforge's tables in a DuckDB file or a DuckLake, read and written through Arrow.

Tables come from `schemas.tables`. Writes go through Arrow in bulk and are
idempotent on each table's primary key, so a rerun or a resumed crash adds no
duplicate rows. Open a Store per task (never share a connection across threads).

Two backends behind one class:
- a DuckDB file (the default): one writer process or any number of read-only
  processes at a time. Opening a file that another process holds waits for it,
  then raises StoreBusy naming the holder (rmforge.store.locking). Every process
  opens per task and closes after, so writers and readers take turns instead of
  failing; a long job of many short steps keeps one open until another process waits
  for the file (rmforge.store.held). Inside the process, write transactions on one
  file take turns too (see `begin`).
- a DuckLake, `ducklake:<catalog>[;data=<folder>]` (rmforge.store.lake): many
  processes write at once and every query reads one committed snapshot.

Keys without PRIMARY KEY constraints, in both: DuckDB keeps a constraint in an ART
index, and with content-hash keys every batch touches the whole index, which each
close (checkpoint) then rewrites, so a batch's cost grew with the table (1.5 s to
write 1,000 rows and close at 1M rows, 2.4 s at 4M; bench/reports/soak_store_costs.md).
`write` keeps keys unique instead: it looks up only the batch's own keys, writes each
batch sorted by key (so zone maps let those lookups skip the rest of a table), and
writers take turns, so no two can add the same key.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from rmforge.schemas.tables import TABLES, VIEWS, RecordT, arrow_records, arrow_rows, to_arrow
from rmforge.store.lake import is_lake_conflict, lake_cursor, take_write_turn
from rmforge.store.location import resolve_store
from rmforge.store.locking import (
    LOCK_TIMEOUT_ENV,
    OPEN_CLOSE_LOCK,
    close_file,
    connect_file,
    retry_while_busy,
    write_turn,
)
from rmforge.store.schema import missing_view_sql, upgrade_sql

if TYPE_CHECKING:
    import polars as pl

T = TypeVar("T")


class Store:
    def __init__(self, db: str | os.PathLike | None = None, *, read_only: bool = False) -> None:
        self.location = resolve_store(db)
        self.is_lake = self.location.is_lake
        # Inside a lake transaction: what to replay if the commit loses to another writer.
        self._journal: list[Callable[[], Any]] | None = None
        self._write_lock: threading.RLock | None = None  # held from begin() to commit()/rollback()/close()
        self._closed = False
        path = self.location.path
        if path is None:
            self.con = lake_cursor(self.location.url, read_only)  # a writable attach creates the schema
        elif read_only:
            if not path.exists():
                raise FileNotFoundError(f"no rmforge database at {path} (run `rmforge run` first)")
            self.con = connect_file(path, read_only=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with OPEN_CLOSE_LOCK:
                self.con = connect_file(path, read_only=False)
                try:
                    for statement in upgrade_sql(self.execute):
                        self.execute(statement)
                except BaseException:
                    self.close()
                    raise
        if read_only:
            try:
                for statement in missing_view_sql(self.execute):
                    self.execute(statement)
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close; an open transaction is rolled back. Closing again does nothing."""
        self._journal = None
        if not self._closed:
            self._closed = True
            path = self.location.path
            with OPEN_CLOSE_LOCK:
                if path is None:
                    self.con.close()
                else:
                    close_file(path, self.con)
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
        """Start a write transaction; in a file, after any other thread's write transaction on it ends.
        `transaction()` pairs it with its commit or rollback."""
        path = self.location.path
        if path is None:  # a lake
            self.con.execute("BEGIN TRANSACTION")
            self._journal = []
            take_write_turn(self.con)
            return
        lock = write_turn(path)
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
                take_write_turn(self.con)
                for step in journal:
                    step()
            replaying = True
            self.con.execute("COMMIT")

        retry_while_busy(
            attempt,
            is_lake_conflict,
            lambda exc, timeout: (
                f"{self.location}: commits kept conflicting with other writers for {timeout:g} s "
                f"(set {LOCK_TIMEOUT_ENV} to wait longer): {str(exc).splitlines()[-1]}"
            ),
        )

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One write transaction for the block (`begin`): committed when the block ends (`commit`:
        in a lake, replayed until it lands), rolled back when it raises. Writes inside it join it."""
        self.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.commit()

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
            with self.transaction():
                return self.write(table, arrow, on_conflict=on_conflict)
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
                f"SELECT DISTINCT {link} FROM {parent} SEMI JOIN _incoming USING ({link})"
            ).to_arrow_table()
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
        with self.transaction():
            for table in contents:
                self.execute(f"DELETE FROM {table}")
            return {table: self.write(table, rows) for table, rows in contents.items()}

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
                rows = (
                    f"SELECT * FROM _incoming ANTI JOIN "
                    f"(SELECT {columns} FROM {table} SEMI JOIN _incoming USING ({columns})) USING ({columns})"
                )
            return self._insert_in_key_order(table, rows)

    def _insert_in_key_order(self, table: str, rows_sql: str) -> int:
        """INSERT the query's rows sorted by key (a join does not keep the batch's order, and
        stored in key order a batch stays clustered); returns how many."""
        return self.con.execute(f"INSERT INTO {table} BY NAME {rows_sql} ORDER BY {_key_columns(table)}").fetchall()[0][
            0
        ]

    @contextmanager
    def registered(self, name: str, table: pa.Table) -> Iterator[None]:
        """`table` visible to this store's SQL as `name` for the duration of the block: a batch's
        keys go in as a column, cheaper to bind than a list parameter of thousands of strings."""
        with _registered(self.con, name, table):
            yield

    # reads
    def count(self, table: str) -> int:
        return self.execute(f"SELECT count(*) FROM {table}")[0][0]

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """The query's result as an Arrow table."""
        return self.con.sql(query, params=params or None).to_arrow_table()

    def polars(self, query: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """The query's result as a Polars DataFrame."""
        import polars as pl  # only for those who ask: the flows read Arrow

        frame = pl.from_arrow(self.sql(query, params))
        assert isinstance(frame, pl.DataFrame)  # a table converts to a frame (a Series comes from an array)
        return frame

    def table(self, name: str) -> pl.DataFrame:
        """A whole table or view of the store (`schemas.tables`) as a Polars DataFrame."""
        if name not in TABLES and name not in VIEWS:
            raise ValueError(
                f"no table or view {name!r} in an rmforge store "
                f"(tables: {', '.join(TABLES)}; views: {', '.join(VIEWS)})"
            )
        return self.polars(f'SELECT * FROM "{name}"')

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        return arrow_rows(self.sql(sql, params))

    def records(self, record: type[RecordT], sql: str, params: Sequence[Any] | None = None) -> list[RecordT]:
        return arrow_records(record, self.sql(sql, params))

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
    arrow = rows if isinstance(rows, pa.Table) else to_arrow(spec, rows)
    return _dedupe_on_key(arrow, spec.primary_key)


def _key_columns(table: str) -> str:
    return ", ".join(f'"{c}"' for c in TABLES[table].primary_key)


def _key_match(key: Sequence[str], left: str, right: str) -> str:
    return " AND ".join(f'{left}."{c}" = {right}."{c}"' for c in key)


def _dedupe_on_key(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """Keep the last row per key: with no PRIMARY KEY, a repeated key would be stored twice."""
    if table.num_rows < 2 or pc.count_distinct(table[key[0]]).as_py() == table.num_rows:
        return table  # a first key column without repeats makes every key distinct
    indices = pa.array(range(table.num_rows))
    keyed = table.select(list(key)).append_column("_row", indices)
    last = keyed.group_by(list(key)).aggregate([("_row", "max")]).column("_row_max")
    if len(last) == table.num_rows:
        return table
    return table.take(sorted(last.to_pylist()))
