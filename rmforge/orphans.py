"""Every process a command starts ends with the command, however it ends.

A SIGKILLed command runs no handler, so the processes it started (the vLLM engine and the
worker the engine starts, label workers, checker workers, multiprocessing's resource
tracker) are handed to PID 1 and live on. Parent-death signals do not reach grandchildren
rmforge does not create, and fire when the *thread* that started a child exits (label
workers are started from short-lived task threads). So instead a command:

- puts a marker of its own in its environment, which every process it starts inherits and
  hands on to the processes it starts in turn;
- starts a watchdog: a tiny process, in a session of its own so that a signal to the
  command's process group spares it, which waits for the command to exit and then stops
  every process carrying the marker (SIGTERM, then SIGKILL after a grace period).

The marker is read from /proc/PID/environ, the environment a program was started with, so
it is seen on every process started by exec: subprocess, and multiprocessing's spawn and
forkserver, which is how rmforge and vLLM (see generators/vllm_engine.py) start theirs. A
process forked without exec from the command itself would not show it, nor one that rewrites
that memory to retitle itself (setproctitle does unless SPT_NOENV is set, as it is here). A child meant to
outlive the command (the background Prefect server of `rmforge server start`) is started
without the marker. Linux only; elsewhere no watchdog is started.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import time

MARKER_VARIABLE = "RMFORGE_COMMAND_MARKER"
# SIGTERM first: vLLM's engine stops its workers, and the resource tracker, which ignores
# SIGTERM, exits by itself once every process using it is gone, unlinking the shared memory
# and semaphores they leaked.
GRACE_S = 5.0
# Past this, give up on processes that even SIGKILL did not end (stuck in the kernel).
GIVE_UP_S = GRACE_S + 10.0

# Held, not just started: once per process, and a collected Popen warns that its process runs on.
_watchdog: subprocess.Popen | None = None


def bind_children_to_this_process() -> None:
    """Mark this process's environment and start its watchdog (once per process)."""
    global _watchdog
    if _watchdog is not None or not (sys.platform.startswith("linux") and hasattr(os, "pidfd_open")):
        return
    marker = f"{os.getpid()}-{secrets.token_hex(8)}"
    os.environ[MARKER_VARIABLE] = marker
    # setproctitle (vLLM names its processes VLLM::EngineCore, VLLM::Worker) otherwise writes
    # a long title over the memory /proc/PID/environ shows, hiding the marker.
    os.environ["SPT_NOENV"] = "1"
    _watchdog = subprocess.Popen(
        [sys.executable, "-m", "rmforge.orphans", str(os.getpid()), marker],
        env=environment_for_a_lasting_child(),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def environment_for_a_lasting_child() -> dict[str, str]:
    """This process's environment without the marker: for a child that must outlive the command."""
    return {name: value for name, value in os.environ.items() if name != MARKER_VARIABLE}


def marked_processes(marker: str) -> list[int]:
    """PIDs of the processes started with `RMFORGE_COMMAND_MARKER=marker` in their environment."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and _carries(int(name), marker)]


def _carries(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return f"{MARKER_VARIABLE}={marker}".encode() in environ.read().split(b"\0")
    except OSError:  # gone, or another user's
        return False


def wait_for_exit(parent: int) -> None:
    """Return once `parent`, this watchdog's parent process, has exited."""
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        return
    # Opened after the parent exited, the pidfd could name a new process that reused its PID;
    # this process was then handed to another parent already.
    if os.getppid() == parent:
        select.select([pidfd], [], [])
    os.close(pidfd)


def stop_marked(marker: str) -> None:
    """SIGTERM every marked process, SIGKILL those left after GRACE_S; return when none is left."""
    started = time.monotonic()
    terminated: set[int] = set()
    while (remaining := marked_processes(marker)) and time.monotonic() - started < GIVE_UP_S:
        past_grace = time.monotonic() - started >= GRACE_S
        for pid in remaining:
            if past_grace:
                _signal_if_marked(pid, marker, signal.SIGKILL)
            elif pid not in terminated:  # including those started since the last look
                _signal_if_marked(pid, marker, signal.SIGTERM)
                terminated.add(pid)
        time.sleep(0.1)


def _signal_if_marked(pid: int, marker: str, signum: int) -> None:
    """Signal through a pidfd opened before the marker is checked, so a PID reused in between
    by an unrelated process is never signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # already gone
        return
    try:
        if _carries(pid, marker):
            signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


if __name__ == "__main__":
    parent_pid, command_marker = int(sys.argv[1]), sys.argv[2]
    wait_for_exit(parent_pid)
    stop_marked(command_marker)
