"""Where a store lives: a DuckDB file, or a DuckLake `ducklake:<catalog>[;data=<folder>]`.

`resolve_store` turns --db / $RMFORGE_DB / the default into a `StoreLocation`; `check_store_file`
refuses, before any work, a path that holds some other kind of file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rmforge.store.errors import NotAStore

# Relative to the working directory (a project folder, as for --export data/exports), not to the
# installed package: site-packages is no place for data.
DEFAULT_DB = Path("data") / "rmforge.duckdb"
LAKE_PREFIX = "ducklake:"
# A DuckDB file's main header: an 8-byte checksum, then these magic bytes.
_DUCKDB_MAGIC = b"DUCK"
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
        return self.url[len(LAKE_PREFIX) :].partition(";data=")[0] if self.is_lake else None

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
        path = self.path
        if path is not None:  # a file store
            return path.is_file()
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
        catalog = self.lake_catalog
        if catalog is None:  # a file store
            return Path(self.url).name
        catalog_file = self.lake_catalog_file
        if catalog_file is not None:
            return LAKE_PREFIX + catalog_file.name
        scheme = catalog.partition(":")[0]
        database = re.search(r"\bdbname=(\S+)", catalog)
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


def check_store_file(location: StoreLocation) -> None:
    """Refuse, before any work, a file store whose path holds something other than a DuckDB file."""
    path = location.path
    if path is None or not path.is_file():
        return
    with path.open("rb") as file:
        header = file.read(8 + len(_DUCKDB_MAGIC))
    if header[8:] != _DUCKDB_MAGIC:
        raise NotAStore(path)
