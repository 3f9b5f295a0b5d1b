"""The DuckDB store: the only module that imports duckdb.

Tables come from `schemas.tables`. Writes go through Arrow in bulk and are
idempotent on each table's primary key, so a rerun or a resumed crash adds no
duplicate rows. Open a Store per task (never share a connection across threads).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Literal, Sequence

import duckdb
import pyarrow as pa
from pydantic import BaseModel

from schemas.tables import TABLES, VIEWS, TableSpec, column_sql, create_table_sql, to_arrow

DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "rmforge.duckdb"
# Threads of one process share one DuckDB instance per file: two opening (DDL) or one opening
# while another closes the last connection fail with catalog or file-handle conflicts.
_OPEN_CLOSE_LOCK = threading.RLock()


def resolve_db_path(db: str | os.PathLike | None = None) -> Path:
    """--db, else $RMFORGE_DB, else data/rmforge.duckdb in the checkout."""
    return Path(db or os.environ.get("RMFORGE_DB") or DEFAULT_DB)


class Store:
    def __init__(self, db: str | os.PathLike | None = None, *, read_only: bool = False) -> None:
        self.path = resolve_db_path(db)
        if read_only:
            if not self.path.exists():
                raise FileNotFoundError(f"no rmforge database at {self.path} (run `rmforge run` first)")
            self.con = duckdb.connect(str(self.path), read_only=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _OPEN_CLOSE_LOCK:
            self.con = duckdb.connect(str(self.path))
            for spec in TABLES.values():
                self.execute(create_table_sql(spec))
                self._add_missing_columns(spec)
            for name, query in VIEWS.items():
                self.execute(f"CREATE OR REPLACE VIEW {name} AS {query}")

    def _add_missing_columns(self, spec: TableSpec) -> None:
        """A store made by an older rmforge gains the columns added since (as NULLs)."""
        have = {row[0] for row in self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [spec.name])}
        for name, sql_type in column_sql(spec):
            if name not in have:
                self.execute(f'ALTER TABLE {spec.name} ADD COLUMN "{name}" {sql_type}')

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with _OPEN_CLOSE_LOCK:
            self.con.close()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run a statement and drain its result (DuckDB keeps a connection busy until then)."""
        return self.con.execute(sql, params or []).fetchall()

    def begin(self) -> None:
        self.execute("BEGIN TRANSACTION")

    def commit(self) -> None:
        self.execute("COMMIT")

    # writes
    def write(
        self,
        table: str,
        rows: Sequence[BaseModel] | pa.Table,
        *,
        on_conflict: Literal["ignore", "replace"] = "ignore",
    ) -> int:
        """Bulk insert; rows whose key exists are skipped (ignore) or overwritten (replace)."""
        spec = TABLES[table]
        arrow = rows if isinstance(rows, pa.Table) else to_arrow(spec, list(rows))
        if arrow.num_rows == 0:
            return 0
        arrow = _dedupe_on_key(arrow, spec.primary_key)
        before = self.count(table)
        verb = "INSERT OR IGNORE" if on_conflict == "ignore" else "INSERT OR REPLACE"
        self.con.register("_incoming", arrow)
        try:
            self.execute(f"{verb} INTO {table} BY NAME SELECT * FROM _incoming")
        finally:
            self.con.unregister("_incoming")
        return self.count(table) - before if on_conflict == "ignore" else arrow.num_rows

    # reads
    def count(self, table: str) -> int:
        return self.execute(f"SELECT count(*) FROM {table}")[0][0]

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        return self.arrow(sql, params).to_pylist()

    def records(self, record: type[BaseModel], sql: str, params: Sequence[Any] | None = None) -> list:
        return [record.model_validate(row) for row in self.rows(sql, params)]

    def counts(self) -> dict[str, int]:
        return {name: self.count(name) for name in TABLES}

    def export_parquet(self, sql: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.execute(f"COPY ({sql}) TO '{_sql_path(path)}' (FORMAT PARQUET)")

    def export_jsonl(self, sql: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.execute(f"COPY ({sql}) TO '{_sql_path(path)}' (FORMAT JSON)")


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _dedupe_on_key(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """Keep the last row per key: DuckDB rejects a batch that repeats a key."""
    if table.num_rows < 2:
        return table
    indices = pa.array(range(table.num_rows))
    keyed = table.select(list(key)).append_column("_row", indices)
    last = keyed.group_by(list(key)).aggregate([("_row", "max")]).column("_row_max")
    if len(last) == table.num_rows:
        return table
    return table.take(sorted(last.to_pylist()))
