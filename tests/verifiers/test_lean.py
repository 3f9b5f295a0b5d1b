"""The Lean 4 checker (verifiers/lean.py): finding a step's Lean code, the file Lean checks,
the verdict of a run, and the runner against fake `lean` executables (tests/fake_lean.py);
real-Lean checks run in tests/annotators/test_lean.py where `lean` is on PATH."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from rmforge.verifiers.lean import (
    ESCAPE_HATCH,
    NO_CODE,
    LeanRun,
    LeanRunner,
    LeanSource,
    build_lean_source,
    extract_lean_block,
    interpret,
    step_source,
    uses_escape_hatch,
)
from tests.fake_lean import TRUE_STEP, checked_files, fake_lake_project, fake_lean, posix_only

# --- availability ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("lean") is not None, reason="a lean toolchain is installed")
def test_unavailable_without_lean() -> None:
    reason = LeanRunner().probe()
    assert reason is not None and "lean" in reason and "elan" in reason
    assert reason.startswith("lean binary not found")


def test_unavailable_with_bad_lean_path(tmp_path: Path) -> None:
    assert "not an executable" in (LeanRunner(str(tmp_path / "no-such-lean")).probe() or "")


@posix_only
def test_available_with_working_lean(tmp_path: Path) -> None:
    assert LeanRunner(str(fake_lean(tmp_path, "exit 0"))).probe() is None


@posix_only
@pytest.mark.parametrize(
    ("version", "expected"),
    [("Lean (version 3.51.1, commit abc)", "not Lean 4"), ("", "not Lean 4")],
)
def test_unavailable_when_not_lean4(tmp_path: Path, version: str, expected: str) -> None:
    assert expected in (LeanRunner(str(fake_lean(tmp_path, "exit 0", version=version))).probe() or "")


@posix_only
def test_unavailable_when_version_fails(tmp_path: Path) -> None:
    broken = tmp_path / "lean"
    broken.write_text("#!/bin/sh\necho 'error: no default toolchain configured' >&2\nexit 1\n")
    broken.chmod(0o755)
    reason = LeanRunner(str(broken)).probe() or ""
    assert "--version failed" in reason and "no default toolchain" in reason


@posix_only
def test_unavailable_with_missing_project_dir(tmp_path: Path) -> None:
    lean = fake_lean(tmp_path, "exit 0")
    assert "project_dir" in (LeanRunner(str(lean), project_dir=str(tmp_path / "nope")).probe() or "")


# --- pure helpers ------------------------------------------------------------


def test_extract_lean_block() -> None:
    assert extract_lean_block(TRUE_STEP) == "theorem t : 2 + 2 = 4 := by decide"
    assert extract_lean_block("So 2 + 2 = 4.") is None
    assert extract_lean_block("```lean4\nexample : 1 = 1 := rfl\n```") == "example : 1 = 1 := rfl"
    assert extract_lean_block("```lean\nlemma l : True := trivial\n```") is not None
    # A definition alone states nothing to check.
    assert extract_lean_block("```lean\ndef x : Nat := 2\n```") is None
    # Not Lean.
    assert extract_lean_block("```python\ntheorem = 1\n```") is None
    # Several blocks are checked together.
    two = "```lean\ndef x : Nat := 2\n```\nthen\n```lean\ntheorem t : x = 2 := rfl\n```"
    assert extract_lean_block(two) == "def x : Nat := 2\n\ntheorem t : x = 2 := rfl"


@pytest.mark.parametrize(
    "block",
    [
        "-- theorem t : 1 = 2 := rfl",
        "/-\ntheorem t : 1 = 2 := rfl\n-/",
        "/- outer /- nested -/\ntheorem t : 1 = 2 := rfl\n-/",
        'def s := "\ntheorem t : 1 = 2 := rfl\n"',
    ],
)
def test_declarations_in_comments_or_strings_do_not_count(block: str) -> None:
    assert extract_lean_block(f"```lean\n{block}\n```") is None


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("theorem t : 1 = 1 := rfl", False),
        ("axiom cheat : False\ntheorem t : 1 = 2 := cheat.elim", True),
        ("theorem t : 1 = 2 := by\n  exact sorryAx _ false", True),
        ("#exit\ntheorem t : 1 = 2 := rfl", True),
        ("set_option debug.skipKernelTC true in\ntheorem t : 1 = 2 := rfl", True),
        ('macro "theorem" : command => `(#check 1)', True),
        ("-- this proof is unsafe? no.\ntheorem t : 1 = 1 := rfl", False),
        ("theorem my_axiom_free : 1 = 1 := rfl", False),
    ],
)
def test_uses_escape_hatch(block: str, expected: bool) -> None:
    assert uses_escape_hatch(block) is expected


def test_build_lean_source_hoists_imports() -> None:
    header = "import Mathlib.Tactic\nopen Real\ndef k : Nat := 3"
    block = "import Mathlib\ntheorem t : k = 3 := rfl"
    source = build_lean_source(block, ["Mathlib"], header)
    assert source.text == (
        "import Mathlib\nimport Mathlib.Tactic\n\nopen Real\ndef k : Nat := 3\n\ntheorem t : k = 3 := rfl\n"
    )
    lines = source.text.splitlines()
    assert lines[source.header_lines] == "theorem t : k = 3 := rfl"  # first line after the header

    bare = build_lean_source("theorem t : 1 = 1 := rfl", [])
    assert bare == LeanSource(text="theorem t : 1 = 1 := rfl\n", header_lines=0)


def test_step_source_says_why_a_step_is_not_checked() -> None:
    assert step_source("So 2 + 2 = 4.", []) == NO_CODE
    assert step_source("```lean\naxiom cheat : False\ntheorem t : 1 = 2 := cheat.elim\n```", []) == ESCAPE_HATCH
    assert step_source(TRUE_STEP, ["Mathlib"], "open Nat") == build_lean_source(
        "theorem t : 2 + 2 = 4 := by decide", ["Mathlib"], "open Nat"
    )


# --- interpret: verdict mapping ----------------------------------------------

SOURCE = build_lean_source("theorem t : 1 = 2 := by\n  simp", ["Mathlib"])  # block at lines 3-4


@pytest.mark.parametrize(
    ("run", "verdict", "reason"),
    [
        (LeanRun(0, ""), "correct", "checked by Lean"),
        (LeanRun(0, "f.lean:3:0: warning: unused variable `h`"), "correct", "checked by Lean"),
        (LeanRun(0, "f.lean:3:8: warning: declaration uses 'sorry'"), "unknown", "sorry"),
        (
            LeanRun(1, "f.lean:4:2: error: unsolved goals\n⊢ False\nf.lean:5:0: error: other"),
            "incorrect",
            "line 4:2: unsolved goals",
        ),
        (LeanRun(1, "f.lean:4:2: error(lean.unknownIdentifier): bad x"), "incorrect", "bad x"),
        (LeanRun(1, "f.lean:1:0: error: unknown module prefix 'Mathlib'"), "unknown", "header"),
        (LeanRun(134, "INTERNAL PANIC: out of memory"), "unknown", "without a located error"),
        (LeanRun(None, ""), "unknown", "timeout after 60s"),
    ],
)
def test_interpret(run: LeanRun, verdict: str, reason: str) -> None:
    got_verdict, got_reason = interpret(run, SOURCE, timeout_s=60.0)
    assert got_verdict == verdict
    assert reason in got_reason


# --- the runner against fake lean processes -------------------------------------


@posix_only
def test_timeout_kills_lean_and_is_unknown(tmp_path: Path) -> None:
    # `sleep` is a child of the script: the whole process group must be killed, or
    # the call would block until the sleep ends holding the output pipe.
    runner = LeanRunner(str(fake_lean(tmp_path, "sleep 30; exit 0")), timeout_s=0.5)
    started = time.monotonic()
    verdict = runner.check(build_lean_source("theorem t : 2 + 2 = 4 := by decide", []))
    assert time.monotonic() - started < 10
    assert verdict == ("unknown", "timeout after 0.5s")


@posix_only
def test_project_dir_runs_lake_env_in_project(tmp_path: Path) -> None:
    lean, project = fake_lake_project(tmp_path)
    runner = LeanRunner(str(lean), project_dir=str(project))
    assert runner.probe() is None
    assert runner.check(build_lean_source("theorem t : 2 + 2 = 4 := by decide", [])) == ("correct", "checked by Lean")
    assert Path((tmp_path / "lake.cwd").read_text().strip()).resolve() == project.resolve()
    assert checked_files(tmp_path) == ["theorem t : 2 + 2 = 4 := by decide\n"]
