"""Lean 4 checker (Safe-style): a step is correct only when Lean accepts its proof.

The checker of the `lean` annotator: it finds a step's Lean code, writes the file Lean checks, runs
`lean` (or `lake env lean` in a Mathlib project) with a timeout and reads its messages as a verdict.

Statement format
----------------
A step is checkable when it contains a fenced Lean 4 block (```lean or ```lean4)
holding a `theorem`, `lemma` or `example` with its proof, e.g.

    So 2 + 2 = 4:
    ```lean
    theorem two_add_two : 2 + 2 = 4 := by norm_num
    ```

All Lean blocks of a step are checked together (a `def` block may precede the
theorem). Each step is checked on its own, in a fresh file: the configured
`imports` (default `Mathlib`), then the problem's `lean_header` (a string in the
problem's metadata JSON: extra imports, `open`s, shared defs), then the block.
`import` lines anywhere are hoisted to the top, as Lean requires.

Verdicts: Lean exits 0 with no error and no `sorry` -> correct; an error inside the
step's code -> incorrect (the first error line is the reason); a timeout, a `sorry`,
an error in the header (e.g. Mathlib missing) or an unlocated failure -> unknown;
a step without a Lean block -> unknown ("no Lean code"). Code using axioms, unsafe
code, `#exit` or metaprogramming is not run (unknown): Lean accepting it proves
nothing. Declarations inside comments or strings do not count. No verdict is ever
given without Lean having checked it: `LeanRunner.probe` says why when no
working `lean` is found (the `lean` annotator then raises `AnnotatorUnavailable`).

Installing Lean (needs network)
-------------------------------
    curl https://raw.githubusercontent.com/leanprover/elan/master/elan-init.sh -sSf | sh
    lake new proj math            # a Lake project depending on Mathlib
    cd proj && lake exe cache get # prebuilt Mathlib .olean files (skip a multi-hour build)

then set `project_dir` to that folder (the checker runs `lake env lean FILE` in it),
or `imports: []` to check core-Lean-only proofs with a bare `lean` on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rmforge.schemas.records import Verdict

NOT_FOUND = (
    "lean binary not found on PATH; install elan (https://github.com/leanprover/elan) and a toolchain, or set lean_path"
)

_FENCE = re.compile(r"```[ \t]*lean4?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_DECLARATION = re.compile(
    r"^\s*(?:@\[[^\]]*\]\s*)?(?:private\s+|protected\s+)?(?:theorem|lemma|example)\b",
    re.MULTILINE,
)
_IMPORT = re.compile(r"^\s*import\s+\S")
# Ways to make Lean accept a false or unchecked statement without a `sorry` warning:
# new axioms, unsafe/compiled code, kernel switches, `#exit` (stops checking), and
# metaprogramming (which can add declarations or redefine `theorem`).
_ESCAPE_HATCH = re.compile(
    r"(?<![\w.])(?:axiom|sorryAx|unsafe|implemented_by|extern|debug\.skipKernelTC|#exit"
    r"|elab|elab_rules|macro|macro_rules|syntax|run_cmd|run_elab|run_meta|#eval)(?![\w.])"
)
_LEAN4_VERSION = re.compile(r"\bversion 4\.", re.IGNORECASE)
_CHAR_LITERAL = re.compile(r"'(?:\\.|[^\\'\n])'")
# `file:line:col: error: msg`; newer Lean may tag the severity, e.g. `error(lean.x):`.
_MESSAGE = re.compile(
    r"^(?P<file>.*?):(?P<line>\d+):(?P<col>\d+):\s*(?P<severity>error|warning)(?:\([^)]*\))?:"
    r"\s*(?P<msg>.*)$"
)


def code_only(source: str) -> str:
    """`source` with comments (`--`, nested `/- -/`), strings and char literals
    blanked out, so a declaration hidden in a comment is not taken as code."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        if source.startswith("--", i):
            end = source.find("\n", i)
            i = n if end == -1 else end
        elif source.startswith("/-", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/-", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("-/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif source[i] == '"':
            i += 1
            while i < n and source[i] != '"':
                i += 2 if source[i] == "\\" else 1
            i += 1
            out.append('""')
        elif source[i] == "'" and not (i and (source[i - 1].isalnum() or source[i - 1] in "_'.")):
            match = _CHAR_LITERAL.match(source, i)
            out.append("'" if match is None else "' '")
            i = i + 1 if match is None else match.end()
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


def extract_lean_block(step: str) -> str | None:
    """The step's Lean code (all ```lean blocks joined), or None when no block states
    a theorem, lemma or example outside comments and strings."""
    blocks = [block.strip("\n") for block in _FENCE.findall(step)]
    if not any(_DECLARATION.search(code_only(block)) for block in blocks):
        return None
    return "\n\n".join(blocks)


def uses_escape_hatch(block: str) -> bool:
    return _ESCAPE_HATCH.search(code_only(block)) is not None


@dataclass(frozen=True)
class LeanSource:
    text: str
    header_lines: int  # lines 1..header_lines are imports and header, not the step's code


def build_lean_source(block: str, imports: Sequence[str], header: str = "") -> LeanSource:
    """The file to check: every `import` first (deduplicated), then header, then block."""
    seen: dict[str, None] = {f"import {name}": None for name in imports}
    bodies = []
    for part in (header, block):
        kept = []
        for line in part.splitlines():
            if _IMPORT.match(line):
                seen[line.strip()] = None
            else:
                kept.append(line)
        bodies.append("\n".join(kept).strip("\n"))
    head_body, block_body = bodies
    head = "\n".join([*seen, "", head_body] if head_body else [*seen]).strip("\n")
    prefix = f"{head}\n\n" if head else ""
    return LeanSource(text=f"{prefix}{block_body}\n", header_lines=prefix.count("\n"))


@dataclass(frozen=True)
class LeanRun:
    returncode: int | None  # None: killed on timeout
    output: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_process(command: Sequence[str], timeout_s: float, cwd: str | None = None) -> LeanRun:
    """Run `command`, killing its whole process group on timeout (`lake env` spawns
    `lean`; killing only the parent would leave the child holding the pipe)."""
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:  # pragma: no cover - Windows
            process.kill()
        process.communicate()
        return LeanRun(returncode=None, output="")
    return LeanRun(returncode=process.returncode, output=output)


def interpret(run: LeanRun, source: LeanSource, timeout_s: float) -> tuple[Verdict, str]:
    """Map one Lean run to a verdict and reason."""
    if run.timed_out:
        return "unknown", f"timeout after {timeout_s:g}s"
    errors: list[tuple[int, str]] = []
    sorry = False
    for line in run.output.splitlines():
        match = _MESSAGE.match(line.strip())
        if match is None:
            continue
        if match["severity"] == "error":
            where = f"line {match['line']}:{match['col']}"
            errors.append((int(match["line"]), f"{where}: {match['msg']}"))
        elif "sorry" in match["msg"]:
            sorry = True
    if errors:
        line_no, message = errors[0]
        if line_no <= source.header_lines:
            # Imports or the problem's header failed: the environment's fault, not the step's.
            return "unknown", f"error in Lean header: {message}"
        return "incorrect", message
    if run.returncode != 0:
        first = next((ln.strip() for ln in run.output.splitlines() if ln.strip()), "")
        return "unknown", f"lean exited {run.returncode} without a located error: {first}"[:500]
    if sorry:
        return "unknown", "proof uses sorry"
    return "correct", "checked by Lean"


NO_CODE = "no Lean code"
ESCAPE_HATCH = "uses an axiom, unsafe code or metaprogramming; not checked"


def step_source(step: str, imports: Sequence[str], header: str = "") -> LeanSource | str:
    """The file that checks `step`, or why the step is not checked (`NO_CODE`, `ESCAPE_HATCH`)."""
    block = extract_lean_block(step)
    if block is None:
        return NO_CODE
    if uses_escape_hatch(block):
        return ESCAPE_HATCH
    return build_lean_source(block, imports, header)


class LeanRunner:
    """A Lean 4 toolchain: `lean_path` (None: `lean` on PATH), or `lake env lean` in `project_dir`."""

    def __init__(self, lean_path: str | None = None, timeout_s: float = 60.0, project_dir: str | None = None) -> None:
        self.lean_path = lean_path
        self.timeout_s = timeout_s
        self.project_dir = project_dir

    def lean_binary(self) -> str | None:
        # `which` takes a bare name (searched on PATH) or a path (checked executable).
        return shutil.which(os.path.expanduser(self.lean_path or "lean"))

    def lake_binary(self, lean: str) -> str | None:
        # Prefer the lake of the same toolchain as `lean`.
        sibling = Path(lean).with_name("lake")
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
        return shutil.which("lake")

    def probe(self) -> str | None:
        """None when a working Lean 4 is here, else why not."""
        lean = self.lean_binary()
        if lean is None:
            if self.lean_path:
                return f"lean_path {self.lean_path!r} is not an executable lean binary"
            return NOT_FOUND
        try:
            run = run_process([lean, "--version"], timeout_s=min(self.timeout_s, 30.0))
        except OSError as error:
            return f"cannot run {lean} --version: {error}"
        if run.timed_out or run.returncode != 0:
            return f"{lean} --version failed: {run.output.strip()[:200] or 'timeout'}"
        # Lean 3 (or an unrelated `lean`) would reject every Lean 4 proof: false "incorrect"s.
        if not _LEAN4_VERSION.search(run.output):
            return f"{lean} is not Lean 4: {run.output.strip()[:200]!r}"
        if self.project_dir:
            if not Path(self.project_dir).is_dir():
                return f"Lean project_dir {self.project_dir!r} does not exist"
            if self.lake_binary(lean) is None:
                return "lake not found next to lean or on PATH (needed for project_dir)"
        return None

    def command(self, lean: str, file: str) -> list[str]:
        if self.project_dir:
            lake = self.lake_binary(lean)
            assert lake is not None  # checked by probe()
            return [lake, "env", lean, file]
        return [lean, file]

    def check(self, source: LeanSource) -> tuple[Verdict, str]:
        """Lean's verdict on `source` and the reason (run `probe` first)."""
        lean = self.lean_binary()
        assert lean is not None  # checked by probe()
        with tempfile.TemporaryDirectory(prefix="rmforge-lean-") as tmp:
            file = Path(tmp) / "Check.lean"
            file.write_text(source.text, encoding="utf-8")
            command = self.command(lean, str(file))
            try:
                run = run_process(command, self.timeout_s, cwd=self.project_dir)
            except OSError as error:
                return "unknown", f"could not run lean: {error}"
        return interpret(run, source, self.timeout_s)
