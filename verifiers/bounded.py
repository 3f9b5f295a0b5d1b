"""Run a checker function under a real time and memory bound, from any thread.

Library checkers (math-verify's sympy, big-integer arithmetic) can run for ever or
eat all memory on inputs built to be expensive (`9^{9^{9^9}}`, `100000!`), and
`signal.alarm` timeouts only work in the main thread and cannot interrupt C code.
So the call runs in a long-lived worker subprocess (`python -m rmforge.verifiers.bounded
MODULE:FUNCTION`) that is killed when the wall-clock deadline passes and replaced on
the next call. Inside the worker the kernel enforces the rest: an address-space
limit (MemoryError instead of swapping) and a CPU-time limit per call (so a worker
orphaned by a SIGKILLed parent still stops; it also dies with its parent on Linux).

Arguments and results travel as one JSON line each. Workers are reused, so the
per-call overhead is one pipe round trip (about 0.1-0.3 ms), not a process start.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

# Startup (interpreter + the checker's imports) is not part of a call's time budget.
_STARTUP_TIMEOUT_S = 120.0


class CheckTimeout(Exception):
    """The call ran past its time limit; the worker was killed."""


class CheckFailed(Exception):
    """The call raised inside the worker, or the worker died (memory, signal)."""


class _Worker:
    def __init__(self, target: str, memory_mb: int, warm_up: list[Any]) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rmforge.verifiers.bounded", target, str(memory_mb), json.dumps(warm_up)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._buffer = b""
        ready = self._read_line(time.monotonic() + _STARTUP_TIMEOUT_S)
        if ready is None or json.loads(ready) != "ready":
            self.kill()
            raise CheckFailed(f"checker worker for {target} did not start")

    def _read_line(self, deadline: float) -> bytes | None:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None  # the worker died
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def call(self, args: list[Any], timeout_s: float) -> Any:
        assert self.process.stdin is not None
        request = json.dumps({"args": args, "cpu_s": timeout_s}).encode() + b"\n"
        start = time.monotonic()
        try:
            self.process.stdin.write(request)
            self.process.stdin.flush()
        except OSError as error:
            self.kill()
            raise CheckFailed(f"checker worker died: {error}") from None
        line = self._read_line(start + timeout_s)
        if line is None:
            died = self.process.poll() is not None
            self.kill()
            if died:
                raise CheckFailed(f"checker worker died (exit {self.process.returncode}, likely memory)")
            raise CheckTimeout(f"checker timeout after {timeout_s:g} s")
        reply = json.loads(line)
        if "error" in reply:
            raise CheckFailed(reply["error"])
        return reply["result"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class BoundedPool:
    """Idle workers for one `module:function`, at most `size` of them kept alive."""

    def __init__(
        self, target: str, *, memory_mb: int = 2048, size: int | None = None, warm_up: tuple[Any, ...] = ()
    ) -> None:
        """`warm_up`: arguments of one call made before the worker reports ready, so lazy
        imports and first-use setup never count against a real call's time limit."""
        self.target = target
        self.memory_mb = memory_mb
        self.warm_up = list(warm_up)
        self.size = size or max(1, os.cpu_count() or 1)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def call(self, *args: Any, timeout_s: float) -> Any:
        """`function(*args)` in a worker; raises CheckTimeout / CheckFailed."""
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.alive():
            worker = _Worker(self.target, self.memory_mb, self.warm_up)
        try:
            return worker.call(list(args), timeout_s)
        finally:
            self._release(worker)

    def _release(self, worker: _Worker) -> None:
        # A timed-out or dead worker was already killed; a live one is kept for reuse.
        with self._lock:
            if worker.alive() and len(self._idle) < self.size:
                self._idle.append(worker)
                return
        worker.kill()

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for worker in workers:
            worker.kill()


# ----------------------------------------------------------------------- worker side


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when its parent dies (even mid-computation in C)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the per-call CPU limit still stops an orphan


def _serve(target: str, memory_mb: int, warm_up: list[Any]) -> None:
    import resource

    _die_with_parent()
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    if warm_up:
        function(*warm_up)
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Protocol on a private copy of stdout; library prints go to stderr (discarded).
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    out.write(json.dumps("ready") + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu_now = used.ru_utime + used.ru_stime
        soft = int(cpu_now + 2 * request["cpu_s"] + 2)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        try:
            reply = {"result": function(*request["args"])}
        except BaseException as error:  # noqa: BLE001  # reported to the caller as a failure
            reply = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        out.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]))
