"""The `lean` annotator against fake `lean` executables (tests/fake_lean.py) standing at the process
boundary; real-Lean checks run only where `lean` is on PATH. The checker itself (finding the code,
the verdict of a run, the runner): tests/verifiers/test_lean.py."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from rmforge.annotators.base import AnnotatorUnavailable
from rmforge.annotators.lean import LeanAnnotator
from tests.builders import make_item
from tests.fake_lean import FALSE_STEP, TRUE_STEP, checked_files, fake_lake_project, fake_lean, posix_only

needs_lean = pytest.mark.skipif(shutil.which("lean") is None, reason="lean toolchain not installed")


def annotator(lean: Path, **config) -> LeanAnnotator:
    return LeanAnnotator({"lean_path": str(lean), "imports": [], "workers": 1, **config})


# --- availability ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("lean") is not None, reason="a lean toolchain is installed")
def test_unavailable_without_lean() -> None:
    lean = LeanAnnotator()
    reason = lean.availability()
    assert reason is not None and "lean" in reason and "elan" in reason
    with pytest.raises(AnnotatorUnavailable, match="lean binary not found"):
        lean.annotate([make_item([TRUE_STEP])], run_id="r")


def test_unavailable_with_bad_lean_path(tmp_path: Path) -> None:
    lean = LeanAnnotator({"lean_path": str(tmp_path / "no-such-lean")})
    assert "not an executable" in (lean.availability() or "")
    with pytest.raises(AnnotatorUnavailable):
        lean.annotate([make_item([TRUE_STEP])], run_id="r")


@posix_only
def test_available_with_working_lean(tmp_path: Path) -> None:
    assert LeanAnnotator({"lean_path": str(fake_lean(tmp_path, "exit 0"))}).availability() is None


# --- the annotator against fake lean processes ---------------------------------


@posix_only
def test_passing_lean_marks_step_correct(tmp_path: Path) -> None:
    lean = fake_lean(tmp_path, "exit 0")
    item = make_item(["Plain prose, no Lean.", TRUE_STEP])
    out = annotator(lean).annotate([item], run_id="r")
    verdicts = [(label.step_index, label.verdict, label.reason) for label in out.step_labels]
    assert verdicts == [(0, "unknown", "no Lean code"), (1, "correct", "checked by Lean")]
    assert out.step_labels[1].score == 1.0
    assert out.step_labels[1].annotator == "lean"
    assert checked_files(tmp_path) == ["theorem t : 2 + 2 = 4 := by decide\n"]  # prose not run


@posix_only
def test_lean_error_marks_step_incorrect(tmp_path: Path) -> None:
    body = 'echo "$1:$n:2: error: unsolved goals"; echo "⊢ 4 = 5"; exit 1'
    out = annotator(fake_lean(tmp_path, body)).annotate([make_item([FALSE_STEP])], run_id="r")
    [label] = out.step_labels
    assert (label.verdict, label.score) == ("incorrect", 0.0)
    assert label.reason == "line 1:2: unsolved goals"


@posix_only
def test_header_error_is_not_blamed_on_the_step(tmp_path: Path) -> None:
    body = "echo \"$1:1:0: error: unknown module prefix 'Mathlib'\"; exit 1"
    lean = fake_lean(tmp_path, body)
    out = annotator(lean, imports=["Mathlib"]).annotate([make_item([TRUE_STEP])], run_id="r")
    [label] = out.step_labels
    assert label.verdict == "unknown" and "header" in (label.reason or "")


@posix_only
def test_sorry_is_not_correct(tmp_path: Path) -> None:
    body = "echo \"$1:$n:8: warning: declaration uses 'sorry'\"; exit 0"
    step = "```lean\ntheorem t : 2 + 2 = 5 := by sorry\n```"
    out = annotator(fake_lean(tmp_path, body)).annotate([make_item([step])], run_id="r")
    assert [label.verdict for label in out.step_labels] == ["unknown"]


@posix_only
def test_timeout_kills_lean_and_is_unknown(tmp_path: Path) -> None:
    # `sleep` is a child of the script: the whole process group must be killed, or
    # the call would block until the sleep ends holding the output pipe.
    lean = fake_lean(tmp_path, "sleep 30; exit 0")
    started = time.monotonic()
    out = annotator(lean, timeout_s=0.5).annotate([make_item([TRUE_STEP])], run_id="r")
    assert time.monotonic() - started < 10
    [label] = out.step_labels
    assert (label.verdict, label.reason, label.score) == ("unknown", "timeout after 0.5s", None)


@posix_only
def test_escape_hatch_is_never_run(tmp_path: Path) -> None:
    lean = fake_lean(tmp_path, "exit 0")  # would accept anything
    step = "```lean\naxiom cheat : False\ntheorem t : 1 = 2 := cheat.elim\n```"
    out = annotator(lean).annotate([make_item([step])], run_id="r")
    assert [label.verdict for label in out.step_labels] == ["unknown"]
    assert checked_files(tmp_path) == []


@posix_only
def test_file_has_imports_header_and_block(tmp_path: Path) -> None:
    lean = fake_lean(tmp_path, "exit 0")
    item = make_item([TRUE_STEP], metadata={"lean_header": "import Foo\nopen Nat"})
    annotator(lean, imports=["Mathlib"]).annotate([item], run_id="r")
    assert checked_files(tmp_path) == ["import Mathlib\nimport Foo\n\nopen Nat\n\ntheorem t : 2 + 2 = 4 := by decide\n"]


@posix_only
def test_project_dir_runs_lake_env_in_project(tmp_path: Path) -> None:
    lean, project = fake_lake_project(tmp_path)
    lean_annotator = annotator(lean, project_dir=str(project))
    assert lean_annotator.availability() is None
    out = lean_annotator.annotate([make_item([TRUE_STEP])], run_id="r")
    assert [label.verdict for label in out.step_labels] == ["correct"]
    assert Path((tmp_path / "lake.cwd").read_text().strip()).resolve() == project.resolve()


@posix_only
def test_labels_keep_input_order_across_items(tmp_path: Path) -> None:
    body = 'case "$(cat "$1")" in *"2 + 2 = 5"*) echo "$1:1:0: error: no"; exit 1;; esac; exit 0'
    lean = fake_lean(tmp_path, body)
    first = make_item([FALSE_STEP, "prose", TRUE_STEP])
    second = make_item([TRUE_STEP], index=1)
    out = LeanAnnotator({"lean_path": str(lean), "imports": [], "workers": 3}).annotate([first, second], run_id="r")
    assert [(label.rollout_id, label.step_index, label.verdict) for label in out.step_labels] == [
        (first.rollout.rollout_id, 0, "incorrect"),
        (first.rollout.rollout_id, 1, "unknown"),
        (first.rollout.rollout_id, 2, "correct"),
        (second.rollout.rollout_id, 0, "correct"),
    ]


# --- real Lean (skipped where no toolchain is installed) -------------------------


@pytest.mark.lean
@needs_lean
def test_real_lean_core() -> None:
    lean = LeanAnnotator({"imports": [], "timeout_s": 120})
    sorry_step = "```lean\ntheorem s : 2 + 2 = 5 := by sorry\n```"
    out = lean.annotate([make_item([TRUE_STEP, FALSE_STEP, sorry_step])], run_id="r")
    assert [label.verdict for label in out.step_labels] == ["correct", "incorrect", "unknown"]


@pytest.mark.lean
@needs_lean
@pytest.mark.skipif(
    not os.environ.get("RMFORGE_LEAN_PROJECT"),
    reason="set RMFORGE_LEAN_PROJECT to a Lake project with Mathlib",
)
def test_real_lean_mathlib_norm_num() -> None:
    lean = LeanAnnotator({"project_dir": os.environ["RMFORGE_LEAN_PROJECT"], "timeout_s": 300})
    good = "```lean\ntheorem t : 2 + 2 = 4 := by norm_num\n```"
    bad = "```lean\ntheorem u : 2 + 2 = 5 := by norm_num\n```"
    out = lean.annotate([make_item([good, bad])], run_id="r")
    assert [label.verdict for label in out.step_labels] == ["correct", "incorrect"]
