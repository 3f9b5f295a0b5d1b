"""The export folder: the files each dataset is written as, and how an export owns and replaces its folder.

The export owns its folder. It writes only `README.md` (the card), `rmforge-export.json` (the manifest:
what this export wrote, with sizes and sha256), `rmforge_config.yaml` and each dataset in every format of
`FILE_FORMATS` (`<name>.parquet`, `<name>.jsonl`, `hf/<name>/`). A folder holding anything else, or a
non-empty folder no rmforge export made, is refused. Every file is written under a temporary folder
inside the output folder, then renamed into place (`publish`), so a killed export leaves each file
either old or new, never cut; the manifest says `"status": "writing"` until the last rename.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from rmforge.schemas.config import ExportConfig
from rmforge.schemas.errors import UserError
from rmforge.schemas.exports import EXPORTS
from rmforge.store import StoreLocation, resolve_store

MANIFEST = "rmforge-export.json"
CARD = "README.md"
CONFIG_FILE = "rmforge_config.yaml"
STAGING_PREFIX = ".rmforge-tmp-"
# Exports made before the manifest existed start their card with this line.
_LEGACY_CARD_TITLE = "# rmforge export"


class ExportError(UserError, RuntimeError):
    """An export that cannot be made, naming the folder or store at fault when there is one."""

    def __init__(self, reason: str, where: Path | StoreLocation | None = None) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where is not None else reason)


# ---------------------------------------------------------------- the file formats


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)


def _write_jsonl(table: pa.Table, path: Path) -> None:
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)  # a table converts to a frame (a Series comes from an array)
    frame.write_ndjson(path)


def _save_to_disk(table: pa.Table, path: Path) -> None:
    import datasets
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet_already = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        # An empty dataset saved in 0 shards cannot be loaded back: keep one shard.
        datasets.Dataset(table).save_to_disk(str(path), num_shards=1 if not table.num_rows else None)
    finally:
        if not quiet_already:
            enable_progress_bars()


@dataclass(frozen=True)
class FileFormat:
    """One form every exported dataset is written in."""

    path: str  # where in the export folder, `{name}` standing for the dataset's name
    write: Callable[[pa.Table, Path], None]
    folder: bool = False  # a folder, replaced whole, rather than a file

    def where(self, name: str) -> str:
        return self.path.format(name=name)


# Written in this order; a format in a subfolder (`hf/`) makes that subfolder the export's too.
FILE_FORMATS = (
    FileFormat("{name}.parquet", _write_parquet),
    FileFormat("{name}.jsonl", _write_jsonl),
    FileFormat("hf/{name}", _save_to_disk, folder=True),  # a Hugging Face `datasets` folder (save_to_disk)
)


def write_dataset(folder: Path, name: str, table: pa.Table) -> None:
    """Dataset `name` in every format of FILE_FORMATS, in `folder`."""
    for fmt in FILE_FORMATS:
        fmt.write(table, folder / fmt.where(name))


# ---------------------------------------------------------------- the output folder


def _owned_names() -> tuple[set[str], dict[str, set[str]]]:
    """(the names an export may hold in its folder, {subfolder: the names it may hold there})."""
    top = {CARD, MANIFEST, CONFIG_FILE}
    inside: dict[str, set[str]] = {}
    for name in EXPORTS:
        for fmt in FILE_FORMATS:
            first, _, rest = fmt.where(name).partition("/")
            top.add(first)
            if rest:
                inside.setdefault(first, set()).add(rest)
    return top, inside


def _made_by_rmforge(out: Path) -> bool:
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text(encoding="utf-8")).get("format") == "rmforge-export"
        except (ValueError, AttributeError):
            return False
    card = out / CARD
    return card.is_file() and card.read_text(encoding="utf-8", errors="replace").startswith(_LEGACY_CARD_TITLE)


def check_export(db: str | os.PathLike | None, out_dir: str | os.PathLike, names: list[str] | None) -> list[str]:
    """Refuse a bad export before any work; returns the dataset names to export."""
    names = list(dict.fromkeys(names or EXPORTS))
    unknown = [n for n in names if n not in EXPORTS]
    if unknown:
        raise ExportError(f"unknown dataset {unknown[0]!r}; known: {', '.join(EXPORTS)}")
    location = resolve_store(db)
    if not location.exists():
        raise ExportError("no rmforge database here (run `rmforge run` or `rmforge import` first)", location)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError("is a file; --out must be a folder", out)
    if not out.is_dir():
        return names
    entries = [e for e in out.iterdir() if not e.name.startswith(STAGING_PREFIX)]
    if not entries:
        return names
    if not _made_by_rmforge(out):
        raise ExportError(f"is not empty and holds no rmforge export (no {MANIFEST}); use a new or empty folder", out)
    top, inside = _owned_names()
    foreign = sorted(e.name for e in entries if e.name not in top)
    for sub, allowed in inside.items():
        folder = out / sub
        if folder.is_dir():
            foreign += sorted(f"{sub}/{e.name}" for e in folder.iterdir() if e.name not in allowed)
        elif folder.exists():
            foreign.append(sub)
    if foreign:
        raise ExportError("was not written by rmforge export; move it away or use another folder", out / foreign[0])
    return names


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """One export at a time per folder (a lock on the folder itself, no lock file)."""
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError("another export is writing to this folder", out) from None
        yield
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _replace_folder(new: Path, target: Path, trash: Path) -> None:
    """Put folder `new` at `target`, which is at every moment the old folder or the new one."""
    if not target.exists():
        os.rename(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new)  # now the old folder
    else:  # a kill between these two renames leaves the old folder at `trash`
        os.rename(target, trash)
        os.rename(new, target)
        shutil.rmtree(trash)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Make the staged files durable before they are renamed into place."""
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        _fsync(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def publish(staging: Path, out: Path, names: list[str], manifest: dict[str, Any]) -> None:
    """Rename the staged export into `out`, remove what it does not include, manifest last."""
    files = {
        str(path.relative_to(staging)): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(staging.rglob("*"))
        if path.is_file()
    }
    manifest = {**manifest, "files": files}
    _write_json(staging / f"{MANIFEST}.writing", {**manifest, "status": "writing"})
    _write_json(staging / MANIFEST, {**manifest, "status": "complete"})
    _fsync_tree(staging)
    os.replace(staging / f"{MANIFEST}.writing", out / MANIFEST)
    for sub in _owned_names()[1]:
        (out / sub).mkdir(exist_ok=True)
    for name in EXPORTS:
        for fmt in FILE_FORMATS:
            where = fmt.where(name)
            if not fmt.folder:
                if name in names:
                    os.replace(staging / where, out / where)
                else:
                    (out / where).unlink(missing_ok=True)
                continue
            trash = staging / f"old-{where.replace('/', '-')}"
            if name in names:
                _replace_folder(staging / where, out / where, trash)
            elif (out / where).exists():
                os.rename(out / where, trash)
                shutil.rmtree(trash)
    os.replace(staging / CONFIG_FILE, out / CONFIG_FILE)
    os.replace(staging / CARD, out / CARD)
    os.replace(staging / MANIFEST, out / MANIFEST)
    for folder in [out / sub for sub in _owned_names()[1]] + [out]:  # the renames themselves
        _fsync(folder)


def effective_config(
    settings: ExportConfig, names: list[str], separator: str | None, provenance: dict[str, Any], run_id: str | None
) -> str:
    """`rmforge_config.yaml`: this export's settings and the config of every run behind the data."""
    document = {
        "export": {**settings.model_dump(), "run_id": run_id, "datasets": names, "step_separator": separator},
        "runs": [
            {**run, "started_at": run["started_at"].isoformat() if run["started_at"] else None}
            for run in provenance["runs"]
        ],
    }
    header = "# The settings behind this rmforge export: its own, then each run's that made the data.\n"
    return header + yaml.dump(document, Dumper=_ConfigDumper, sort_keys=False, allow_unicode=True)


class _ConfigDumper(yaml.SafeDumper):
    """Writes text holding newlines (the step separator, prompts) as one double-quoted line with escapes."""


_ConfigDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"' if "\n" in text else None),
)
