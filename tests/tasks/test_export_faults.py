"""Exports under faults: SIGKILL at every step, a full disk, a folder that cannot be written."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from rmforge.exports.files import CARD, CONFIG_FILE, MANIFEST, STAGING_PREFIX, ExportError
from rmforge.schemas.exports import EXPORTS
from rmforge.tasks.export import export_datasets
from tests.tasks.test_export import assert_folder_is_this_export, build_store, folder_files

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter that imports the exporter once, then forks one child per
# kill point: the child counts the export's steps (each dataset written, each rename into
# the output folder) and SIGKILLs itself before step `k`, or is killed after a delay.
# An export of all four datasets has 20 steps: 4 datasets staged, the manifest marked
# "writing", 3 renames per dataset (Parquet, JSONL, hf folder), the config file, the card,
# the manifest.
STEPS = 4 + 1 + 3 * 4 + 3
# Before any write, mid-staging, each kind of rename, the config, the card, the final manifest.
KILL_STEPS = [0, 2, 4, 5, 6, 7, 13, 16, 17, 18, 19]
DRIVER = r"""
import json, os, shutil, signal, sys, time
import datasets, polars  # imported once here, not in every child
import rmforge.exports.files as files
import rmforge.tasks.export as export

args = json.loads(sys.argv[1])

def export_killed_before(step_to_die, out):
    steps = [0]
    def step():
        if steps[0] == step_to_die:
            os.kill(os.getpid(), signal.SIGKILL)
        steps[0] += 1
    def counted(fn, counts):
        def wrapper(*a, **k):
            if counts(*a):
                step()
            return fn(*a, **k)
        return wrapper
    into_out = lambda src, dst, *rest: files.STAGING_PREFIX not in str(dst)
    os.replace = counted(os.replace, into_out)
    os.rename = counted(os.rename, into_out)
    files._exchange = counted(files._exchange, into_out)
    export.write_dataset = counted(export.write_dataset, lambda *a: True)
    export.export_datasets.fn(args["db"], out)
    return steps[0]

def run(out, step_to_die=None, delay=None):
    shutil.copytree(args["old"], out)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            steps = export_killed_before(step_to_die, out)
            os.write(write, str(steps).encode())
            os._exit(0)
        except BaseException:
            import traceback; traceback.print_exc()
            os._exit(1)
    os.close(write)
    if delay is not None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    steps = os.read(read, 100).decode()
    os.close(read)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if not killed and os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"export failed in {out}")
    return {"out": out, "killed": killed, "steps": int(steps) if steps else None}

results = []
start = time.monotonic()
full = run(os.path.join(args["dir"], "uninterrupted"))
duration = time.monotonic() - start
results.append(full)
for k in args["kill_steps"]:
    results.append(run(os.path.join(args["dir"], f"step-{k}"), step_to_die=k))
for fraction in (0.3, 0.7):
    results.append(run(os.path.join(args["dir"], f"after-{fraction}"), delay=fraction * duration))
print(json.dumps(results))
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def card_body(path: Path) -> str:
    """The card without its export-time line (two runs of one export differ only there)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.startswith("Exported by rmforge"))


def assert_every_file_is_old_or_new(out: Path, old: Path, new: Path) -> None:
    """Each file present is complete: byte-equal to the old export's or the new one's, and loadable."""
    present = {f for f in folder_files(out) if not f.startswith(STAGING_PREFIX)}
    for name in present:
        path = out / name
        if name.endswith((".parquet", ".jsonl")):
            versions = {sha256(ref / name) for ref in (old, new) if (ref / name).exists()}
            assert sha256(path) in versions, f"{name} is neither the old nor the new file"
            if name.endswith(".parquet"):
                pq.read_table(path)
            else:
                [json.loads(line) for line in path.read_text().splitlines()]
        elif name == CARD:
            assert card_body(path) in {card_body(old / CARD), card_body(new / CARD)}
        elif name == CONFIG_FILE:
            assert path.read_text() in {(old / CONFIG_FILE).read_text(), (new / CONFIG_FILE).read_text()}
        elif name == MANIFEST:
            assert json.loads(path.read_text())["status"] in ("writing", "complete")
    for dataset in EXPORTS:
        folder = out / "hf" / dataset
        if folder.exists():
            rows = datasets.load_from_disk(str(folder)).to_list()
            assert rows in [pq.read_table(ref / f"{dataset}.parquet").to_pylist() for ref in (old, new)], dataset
    manifest = json.loads((out / MANIFEST).read_text())
    if manifest["status"] == "complete":  # the folder is then one export, whole
        assert_folder_is_this_export(out, ignore=STAGING_PREFIX)


@pytest.mark.slow  # SIGKILLed subprocesses
def test_sigkill_at_every_step_leaves_only_complete_files(tmp_path):
    old_db, new_db = str(tmp_path / "old.duckdb"), str(tmp_path / "new.duckdb")
    build_store(old_db, 2, tag="old")
    build_store(new_db, 20, tag="new", padding=2000)
    old, new = tmp_path / "old-export", tmp_path / "new-export"
    export_datasets.fn(old_db, str(old))
    export_datasets.fn(new_db, str(new))
    runs = tmp_path / "runs"
    runs.mkdir()

    args = {"db": new_db, "old": str(old), "dir": str(runs), "kill_steps": KILL_STEPS}
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    results = json.loads(driver.stdout.splitlines()[-1])

    uninterrupted, *interrupted = results
    assert not uninterrupted["killed"] and uninterrupted["steps"] == STEPS
    by_step = [r for r in interrupted if Path(r["out"]).name.startswith("step-")]
    assert len(by_step) == len(KILL_STEPS) and all(r["killed"] for r in by_step)
    for result in interrupted:
        assert_every_file_is_old_or_new(Path(result["out"]), old, new)
    mixed = [r for r in by_step if json.loads((Path(r["out"]) / MANIFEST).read_text())["status"] == "writing"]
    assert mixed, "no kill landed between the first and the last rename"

    # A rerun after any kill leaves the new export, whole, and no temporary folder.
    for result in (by_step[0], mixed[len(mixed) // 2], by_step[-1], interrupted[-1]):
        out = Path(result["out"])
        export_datasets.fn(new_db, str(out))
        assert_folder_is_this_export(out)
        assert not list(out.glob(f"{STAGING_PREFIX}*"))
        for name in EXPORTS:
            assert sha256(out / f"{name}.parquet") == sha256(new / f"{name}.parquet")


def snapshot(out: Path) -> dict[str, str]:
    return {name: sha256(out / name) for name in folder_files(out)}


@pytest.fixture()
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root with CAP_SYS_ADMIN; skipped elsewhere)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_fails_with_one_error_and_keeps_the_old_export(tmp_path, small_disk):
    small_db, big_db = str(tmp_path / "small.duckdb"), str(tmp_path / "big.duckdb")
    build_store(small_db, 2)
    build_store(big_db, 60, padding=3000)  # ~1 MB of text, in each of three formats
    out = small_disk / "export"
    export_datasets.fn(small_db, str(out))
    before = snapshot(out)

    with pytest.raises(ExportError) as error:
        export_datasets.fn(big_db, str(out))
    assert str(error.value).startswith(f"{out}: cannot write the export: No space left on device")
    assert snapshot(out) == before
    assert_folder_is_this_export(out)


@pytest.fixture()
def immutable(tmp_path):
    """Make folders immutable with chattr +i (root ignores permission bits, not this)."""
    made: list[Path] = []

    def make(path: Path) -> None:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
        if done.returncode:
            pytest.skip(f"chattr +i unavailable here: {done.stderr.strip()}")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_folder_that_cannot_be_written_fails_with_one_error(tmp_path, db, immutable):
    build_store(db)
    out = tmp_path / "out"
    export_datasets.fn(db, str(out))
    before = snapshot(out)
    immutable(out)
    with pytest.raises(ExportError) as error:
        export_datasets.fn(db, str(out))
    assert str(error.value) == f"{out}: cannot write the export: Operation not permitted"
    assert snapshot(out) == before

    locked_parent = tmp_path / "locked"
    locked_parent.mkdir()
    immutable(locked_parent)
    with pytest.raises(ExportError, match=f"{locked_parent / 'out'}: cannot write the export: Operation not"):
        export_datasets.fn(db, str(locked_parent / "out"))


def test_write_error_midway_keeps_the_old_export(tmp_path, db, monkeypatch):
    """The same fault injected at the Parquet writer, for machines where tmpfs/chattr are unavailable."""
    build_store(db)
    out = tmp_path / "out"
    export_datasets.fn(db, str(out))
    before = snapshot(out)
    write_table = pq.write_table
    calls = []

    def full_on_second_file(table, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"PAR1 cut")  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write_table(table, path, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_on_second_file)
    with pytest.raises(ExportError, match=f"{out}: cannot write the export: No space left on device"):
        export_datasets.fn(db, str(out))
    assert snapshot(out) == before
    assert not list(out.glob(f"{STAGING_PREFIX}*"))
    shutil.rmtree(out)
