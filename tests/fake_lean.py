"""Fake `lean` executables (shell scripts in tmp_path) at the process boundary, for the Lean
checker's tests (tests/verifiers/test_lean.py) and the `lean` annotator's (tests/annotators/test_lean.py):
no Lean toolchain is installed here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="fake lean is a POSIX shell script")

TRUE_STEP = "Check it:\n```lean\ntheorem t : 2 + 2 = 4 := by decide\n```"
FALSE_STEP = "Check it:\n```lean\ntheorem f : 2 + 2 = 5 := by decide\n```"


def fake_lean(tmp_path: Path, body: str, version: str = "Lean (version 4.9.0, fake)") -> Path:
    """A `lean` that answers --version, logs the file it was given, then runs `body`."""
    log = tmp_path / "checked.log"
    script = tmp_path / "bin" / "lean"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\n'
        f'cat "$1" >> "{log}"; echo "=====" >> "{log}"\n'
        'n=$(wc -l < "$1")\n'
        f"{body}\n"
    )
    script.chmod(0o755)
    return script


def checked_files(tmp_path: Path) -> list[str]:
    log = tmp_path / "checked.log"
    return log.read_text().split("=====\n")[:-1] if log.exists() else []


def fake_lake_project(tmp_path: Path) -> tuple[Path, Path]:
    """(a `lean` that accepts everything, a Lake project folder) beside a fake `lake` whose `env`
    runs its command and records the folder it ran in (tmp_path / "lake.cwd")."""
    lean = fake_lean(tmp_path, "exit 0")
    lake = lean.with_name("lake")
    lake.write_text(f'#!/bin/sh\npwd > "{tmp_path}/lake.cwd"\n[ "$1" = env ] && shift\nexec "$@"\n')
    lake.chmod(0o755)
    project = tmp_path / "proj"
    project.mkdir()
    return lean, project
