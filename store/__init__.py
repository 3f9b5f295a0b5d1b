"""The store: rmforge's tables in a DuckDB file or a DuckLake; the only package that imports duckdb.

- `store.py`: the Store class (reads into Arrow and Polars, keyed writes, `transaction()`)
- `location.py`: where a store lives (StoreLocation, resolve_store, check_store_file)
- `locking.py`: waiting for a store another process holds (StoreBusy), turns between threads
- `held.py`: one Store kept open across a long job's steps, handed to a process that waits (HeldStore)
- `lake.py`: the DuckLake backend (attaching, cursors, commit conflicts)
- `schema.py`: the DDL of `schemas.tables`, and bringing an older store up to date
- `errors.py`: what the store raises (StoreError, NotAStore, StoreBusy)
- `runs.py`: the `runs` table's bookkeeping (a run's record and heartbeat)

It imports nothing of rmforge but `rmforge.schemas` (tests/test_layering.py).
"""

from rmforge.store.errors import NotAStore, StoreBusy, StoreError
from rmforge.store.location import DEFAULT_DB, LAKE_PREFIX, StoreLocation, check_store_file, resolve_store
from rmforge.store.locking import LOCK_TIMEOUT_ENV, lock_timeout
from rmforge.store.store import Store

__all__ = [
    "DEFAULT_DB",
    "LAKE_PREFIX",
    "LOCK_TIMEOUT_ENV",
    "NotAStore",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreLocation",
    "check_store_file",
    "lock_timeout",
    "resolve_store",
]
