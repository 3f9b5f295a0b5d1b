"""Run a model-written check program in a sandbox and read its verdict (the `code_check` checker).

Running a separate process is this checker's whole job, as running `lean` is the Lean checker's: the
program is untrusted (a model wrote it, possibly steered by text inside the rollout it checks), so it
never runs in rmforge's own process.

Verdict protocol: the program's last non-empty output line is exactly `VERDICT: correct` or
`VERDICT: incorrect`, and it exits 0. Anything else is `unknown` with the reason: no verdict line,
an error (the traceback's last line), a timeout, a limit reached, or a refused operation.

Walls, from the outside in (the child's side is `verifiers/sandbox_child.py`, which lists them):

* this process: a fresh temporary folder as the working directory (removed afterwards), an empty
  environment, no stdin, a wall-clock timeout and an output cap, after either of which the child's
  whole process group (its own session) is killed, and it is always killed at the end so nothing
  outlives a check;
* the kernel (Linux): seccomp kills the child on process creation, sockets, signals to others and
  other escapes (so no network: it cannot open a socket at all), Landlock confines its file reads to
  the Python installation and system libraries and its writes to the temporary folder; with
  `require_kernel` (the default) nothing runs where they cannot be installed (`probe` says why);
* the interpreter: an audit hook refuses the same operations at the Python call with a readable
  reason, and resource limits cap CPU seconds, memory, file size and open files.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rmforge.schemas.records import Verdict

CHILD = Path(__file__).with_name("sandbox_child.py")
# Mirrors of the child's constants (the child imports nothing from rmforge).
REFUSED_EXIT = 86
UNAVAILABLE_EXIT = 87
LAYERS_LINE = "rmforge-sandbox layers: "
REFUSAL_LINE = "rmforge-sandbox refused: "
UNAVAILABLE_LINE = "rmforge-sandbox unavailable: "
VERDICTS: dict[str, Verdict] = {"VERDICT: correct": "correct", "VERDICT: incorrect": "incorrect"}
_READ_CHUNK = 65536


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 20.0
    cpu_s: int = 10
    memory_mb: int = 1024
    output_bytes: int = 16384
    require_kernel: bool = True


@dataclass(frozen=True)
class SandboxRun:
    returncode: int | None  # None: killed (timeout or output cap)
    output: str  # the program's own output (the layers line removed)
    layers: str  # the walls the child reported up, "" when it never got that far
    timed_out: bool = False
    output_capped: bool = False


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def _read_capped(process: subprocess.Popen, limits: SandboxLimits) -> tuple[bytes, bool, bool]:
    """The child's output up to the cap, and whether the deadline or the cap stopped the reading."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + limits.wall_s
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), True, False
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:  # every writer closed: the child is done
            return b"".join(chunks), False, False
        chunks.append(chunk)
        size += len(chunk)
        if size > limits.output_bytes:
            return b"".join(chunks)[: limits.output_bytes], False, True


def run_in_sandbox(code: str, limits: SandboxLimits | None = None) -> SandboxRun:
    """Run `code` as a Python program behind the walls above; its process group never outlives the call."""
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="rmforge-check-", ignore_cleanup_errors=True) as workdir:
        Path(workdir, "check.py").write_text(code, encoding="utf-8")
        command = [
            sys.executable, "-I", "-B", str(CHILD), workdir,
            str(limits.cpu_s), str(limits.memory_mb), "1" if limits.require_kernel else "0",
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env={"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole below
        )
        try:
            raw, timed_out, capped = _read_capped(process, limits)
        finally:
            _kill_group(process.pid)
            assert process.stdout is not None
            process.stdout.close()
            returncode = process.wait()
    text = raw.decode("utf-8", errors="replace")
    layers = ""
    if text.startswith(LAYERS_LINE):
        first, _, text = text.partition("\n")
        layers = first.removeprefix(LAYERS_LINE)
    killed = timed_out or capped
    return SandboxRun(None if killed else returncode, text, layers, timed_out, capped)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _line_after(text: str, marker: str) -> str:
    return next((line.removeprefix(marker) for line in text.splitlines() if line.startswith(marker)), "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def interpret(run: SandboxRun, limits: SandboxLimits) -> tuple[Verdict, str]:
    """The verdict of one sandboxed run, and why."""
    if run.timed_out:
        return "unknown", f"timeout after {limits.wall_s:g}s wall clock; process group killed"
    if run.output_capped:
        return "unknown", f"output over {limits.output_bytes} bytes; process group killed"
    code = run.returncode
    if code == UNAVAILABLE_EXIT:
        return "unknown", f"sandbox unavailable: {_line_after(run.output, UNAVAILABLE_LINE)}"
    if code == REFUSED_EXIT:
        return "unknown", f"sandbox refused: {_line_after(run.output, REFUSAL_LINE)}"
    if code is not None and code < 0:
        reasons: dict[int, str] = {
            signal.SIGXCPU: f"CPU limit of {limits.cpu_s}s reached",
            signal.SIGSYS: "killed by the kernel filter: a forbidden system call (process, network or escape)",
            signal.SIGXFSZ: "file size limit reached",
        }
        return "unknown", reasons.get(-code, f"killed by {_signal_name(-code)}")
    if code != 0:
        return "unknown", f"code error (exit {code}): {_last_line(run.output)[:300]}"
    last = _last_line(run.output)
    if last in VERDICTS:
        return VERDICTS[last], last
    return "unknown", f"no verdict printed (last line: {last[:200]!r})"


def check_program(code: str, limits: SandboxLimits | None = None) -> tuple[Verdict, str, SandboxRun]:
    """Run `code` in the sandbox: its verdict, the reason, and the run (output, layers)."""
    limits = limits or SandboxLimits()
    try:
        run = run_in_sandbox(code, limits)
    except OSError as error:
        return "unknown", f"could not start the sandbox: {error}", SandboxRun(None, "", "")
    verdict, reason = interpret(run, limits)
    return verdict, reason, run


def probe(limits: SandboxLimits | None = None) -> str | None:
    """None when the sandbox works here, else why not (e.g. no Landlock in this kernel)."""
    verdict, reason, _ = check_program("print('VERDICT: correct' if 1 + 1 == 2 else 'VERDICT: incorrect')", limits)
    return None if verdict == "correct" else reason
