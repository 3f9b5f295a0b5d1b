"""The code sandbox: the verdict protocol, and real escape attempts that must end as `unknown`
with the reason while the machine stays untouched (planted files unchanged, nothing written
outside the sandbox folder, no connection made, no process left behind).

Every program really runs; nothing is mocked. The kernel layer (seccomp, Landlock) is also tested
alone, without the audit hook, so each wall is shown to hold on its own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

from rmforge.verifiers import code_sandbox
from rmforge.verifiers.code_sandbox import SandboxLimits, check_program, probe

FAST = SandboxLimits(wall_s=10.0, cpu_s=5)


def run(program: str, limits: SandboxLimits = FAST) -> tuple[str, str]:
    verdict, reason, _ = check_program(textwrap.dedent(program), limits)
    return verdict, reason


@pytest.fixture(autouse=True)
def no_process_left():
    """Every check's process group is gone when the call returns (processes other tests of this
    worker left are not the sandbox's)."""
    before = set(psutil.Process().children(recursive=True))
    yield
    assert set(psutil.Process().children(recursive=True)) <= before


@pytest.fixture()
def secret(tmp_path_factory):
    """A planted file outside any sandbox folder, and its content."""
    path = tmp_path_factory.mktemp("planted") / "secret.txt"
    path.write_text("TOP-SECRET-42")
    return path


def test_the_kernel_walls_are_up_here():
    assert probe(FAST) is None
    _, _, sandboxed = check_program("print('VERDICT: correct' if 2 > 1 else 'VERDICT: incorrect')", FAST)
    assert "seccomp" in sandboxed.layers and "landlock" in sandboxed.layers and "audit-hook" in sandboxed.layers


# --- the verdict protocol ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "verdict"),
    [
        ("from fractions import Fraction\nok = Fraction(1, 3) + Fraction(1, 6) == Fraction(1, 2)\n"
         "print('VERDICT: correct' if ok else 'VERDICT: incorrect')", "correct"),
        ("print('VERDICT: correct' if 15 - 3 == 11 else 'VERDICT: incorrect')", "incorrect"),
        ("import sympy as sp\nx = sp.symbols('x')\nok = sp.expand((x + 1) ** 2) == x**2 + 2*x + 1\n"
         "print('working...')\nprint('VERDICT: correct' if ok else 'VERDICT: incorrect')", "correct"),
        ("import z3\nx = z3.Int('x')\ns = z3.Solver()\ns.add(3 * x == 12, x != 4)\n"
         "print('VERDICT: correct' if s.check() == z3.unsat else 'VERDICT: incorrect')", "correct"),
    ],
)  # fmt: skip
def test_a_program_printing_a_verdict_line_last_gives_that_verdict(program, verdict):
    assert run(program) == (verdict, f"VERDICT: {verdict}")


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        ("print('the step is right')", "no verdict printed (last line: 'the step is right')"),
        ("print('VERDICT: correct')\nprint('done')", "no verdict printed (last line: 'done')"),
        ("print('verdict: Correct!')", "no verdict printed"),
        ("", "no verdict printed (last line: '')"),
        ("x = 1 / 0", "code error (exit 1): ZeroDivisionError (check.py line 1): division by zero"),
        ("print('VERDICT: correct')\nraise ValueError('late')", "code error (exit 1): ValueError (check.py line 2)"),
        ("print('VERDICT: correct'", "code error (exit 1): "),
        ("import sys\nprint('VERDICT: correct')\nsys.exit(3)", "code error (exit 3)"),
    ],
)
def test_anything_but_a_clean_verdict_line_is_unknown_with_the_reason(program, reason):
    verdict, why = run(program)
    assert verdict == "unknown" and why.startswith(reason), why


def test_the_program_cannot_forge_the_layers_line_or_a_refusal():
    program = "print('rmforge-sandbox layers: none')\nprint('VERDICT: correct' if 1 < 2 else 'x')"
    verdict, _, sandboxed = check_program(program, FAST)
    assert verdict == "correct" and "seccomp" in sandboxed.layers


# --- escape attempts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "read",
    [
        "open({path!r}).read()",
        "import os\nos.read(os.open({path!r}, os.O_RDONLY), 100)",
        "import pathlib\npathlib.Path({path!r}).read_text()",
        "open('/etc/passwd').read()",
        "import os\nos.listdir('/root')\nopen({path!r}).read()",
    ],
)
def test_reading_a_file_outside_the_sandbox_is_refused_even_when_caught(read, secret):
    body = textwrap.indent(read.format(path=str(secret)), "    ")
    program = f"leak = ''\ntry:\n{body}\nexcept Exception:\n    pass\nprint(leak)\nprint('VERDICT: correct')"
    verdict, reason = run(program)
    assert verdict == "unknown" and reason.startswith("sandbox refused:"), reason
    assert "TOP-SECRET" not in reason


@pytest.mark.parametrize(
    "write",
    [
        "open({path!r}, 'w').write('pwned')",
        "open({path!r}, 'a').write('pwned')",
        "import os\nos.remove({path!r})",
        "import os\nos.chmod({path!r}, 0o777)",
        "import shutil\nshutil.rmtree({folder!r})",
        "import os\nos.rename({path!r}, {path!r} + '.moved')",
    ],
)
def test_writing_or_deleting_outside_the_sandbox_is_refused_and_the_file_is_unchanged(write, secret):
    before = (secret.read_text(), secret.stat().st_mode)
    verdict, reason = run(write.format(path=str(secret), folder=str(secret.parent)) + "\nprint('VERDICT: correct')")
    assert verdict == "unknown" and reason.startswith("sandbox refused:"), reason
    assert (secret.read_text(), secret.stat().st_mode) == before
    assert sorted(p.name for p in secret.parent.iterdir()) == ["secret.txt"]


def test_writing_inside_the_sandbox_folder_is_allowed_and_it_is_removed_afterwards():
    verdict, reason, sandboxed = check_program(
        "import os\nopen('scratch.txt', 'w').write('12')\n"
        "print(os.getcwd())\nprint('VERDICT: correct' if open('scratch.txt').read() == '12' else 'no')",
        FAST,
    )
    assert verdict == "correct", reason
    workdir = sandboxed.output.splitlines()[0]
    assert "rmforge-check-" in workdir and not __import__("os").path.exists(workdir)


@pytest.mark.parametrize(
    "spawn",
    [
        "import os\nos.system('touch {marker}')",
        "import subprocess\nsubprocess.run(['touch', '{marker}'])",
        "import os\nos.execv('/usr/bin/touch', ['touch', '{marker}'])",
        "import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{marker}'], {{}})",
        "import pty\npty.spawn(['touch', '{marker}'])",
        "import ctypes\nctypes.CDLL(None).system(b'touch {marker}')",
        "import z3, ctypes\nctypes.CDLL(None).system(b'touch {marker}')",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
    ],
)
def test_starting_a_process_is_refused_and_nothing_runs(spawn, tmp_path):
    marker = tmp_path / "pwned"
    verdict, reason = run(spawn.format(marker=marker) + "\nprint('VERDICT: correct')")
    assert verdict == "unknown" and reason.startswith("sandbox refused:"), reason
    assert not marker.exists()


def test_a_fork_bomb_is_stopped_at_the_first_fork():
    verdict, reason = run("import os\nwhile True:\n    os.fork()")
    assert (verdict, reason) == ("unknown", "sandbox refused: os.fork()")


def test_a_process_started_past_the_audit_hook_is_killed_by_the_kernel(tmp_path):
    """subprocess's C helper raises no audit event: seccomp kills the clone itself."""
    marker = tmp_path / "pwned"
    program = f"""
        import os, sympy, sys
        fork_exec = sys.modules['_posixsubprocess'].fork_exec
        errpipe_read, errpipe_write = os.pipe()
        fork_exec(['/usr/bin/touch', '{marker}'], [b'/usr/bin/touch'], True, (), None, None,
                  -1, -1, -1, -1, -1, -1, errpipe_read, errpipe_write, True, False, 0, None, None, None, -1,
                  None, False)
        print('VERDICT: correct')
    """
    verdict, reason = run(program)
    assert verdict == "unknown" and "forbidden system call" in reason, reason
    assert not marker.exists()


@pytest.fixture()
def listener():
    """A local TCP server; the test asserts that no connection ever reaches it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    yield server
    server.close()


def no_connection_arrived(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except TimeoutError:
        return True
    return False


@pytest.mark.parametrize(
    "connect",
    [
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2)",
        "import sympy, sys\ns = sys.modules['_socket'].socket()\ns.connect(('127.0.0.1', {port}))",
    ],
)
def test_network_access_is_refused_and_no_connection_arrives(connect, listener):
    program = connect.format(port=listener.getsockname()[1]) + "\nprint('VERDICT: correct')"
    verdict, reason = run(program)
    assert verdict == "unknown" and reason.startswith(("sandbox refused:", "code error")), reason
    assert no_connection_arrived(listener)


def test_huge_output_is_capped_and_the_process_killed():
    verdict, reason = run("import sys\nfor _ in range(1000):\n    sys.stdout.write('x' * 100_000)\n")
    assert (verdict, reason) == ("unknown", f"output over {FAST.output_bytes} bytes; process group killed")


def test_a_memory_bomb_fails_inside_its_limit():
    verdict, reason = run("x = bytearray(8 << 30)\nprint('VERDICT: correct')")
    assert verdict == "unknown" and "MemoryError" in reason, reason


@pytest.mark.slow  # waits out a limit
def test_an_infinite_loop_hits_the_cpu_limit():
    verdict, reason = run("while True:\n    pass", SandboxLimits(wall_s=30.0, cpu_s=1))
    assert (verdict, reason) == ("unknown", "CPU limit of 1s reached")


@pytest.mark.slow  # waits out a limit
def test_a_sleeping_program_hits_the_wall_clock_and_its_group_is_killed():
    verdict, reason = run("import time\ntime.sleep(60)", SandboxLimits(wall_s=1.0, cpu_s=5))
    assert (verdict, reason) == ("unknown", "timeout after 1s wall clock; process group killed")


def test_signalling_the_parent_is_refused():
    verdict, reason = run("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\nprint('VERDICT: correct')")
    assert verdict == "unknown" and reason.startswith("sandbox refused: os.kill"), reason


def test_the_audit_hook_cannot_be_found_and_replaced():
    program = "import gc\nhooks = [o for o in gc.get_objects() if getattr(o, '__name__', '') == 'hook']\nprint('VERDICT: correct')"
    verdict, reason = run(program)
    assert verdict == "unknown" and reason.startswith("sandbox refused: gc.get_objects"), reason


# --- the kernel layer alone ----------------------------------------------------------------------------

KERNEL_ONLY = """
import ctypes, os, sys
sys.path.insert(0, {child_dir!r})
import sandbox_child as child
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert child.install_landlock(libc, child.readable_roots(), [{workdir!r}]).startswith("landlock")
assert child.install_seccomp(libc) is None
try:
    open({secret!r}).read()
    print("read the secret")
except PermissionError:
    print("read refused by Landlock")
try:
    open({outside!r}, "w")
    print("wrote outside")
except PermissionError:
    print("write refused by Landlock")
open(os.path.join({workdir!r}, "inside.txt"), "w").write("ok")
print("wrote inside", flush=True)
os.fork()
print("forked")
"""


def test_the_kernel_walls_hold_without_the_audit_hook(secret, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    script = KERNEL_ONLY.format(
        child_dir=str(code_sandbox.CHILD.parent),
        workdir=str(workdir),
        secret=str(secret),
        outside=str(secret.parent / "new.txt"),
    )
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["read refused by Landlock", "write refused by Landlock", "wrote inside"]
    assert result.returncode == -31  # SIGSYS: seccomp killed the fork
    assert not (secret.parent / "new.txt").exists() and (workdir / "inside.txt").read_text() == "ok"


# --- prompt injection inside the program's own text -----------------------------------------------------


def test_a_program_that_tries_to_rewrite_its_own_verdict_rules_is_unknown():
    program = """
        import builtins, os
        os.environ['RMFORGE'] = 'trusted'
        builtins.open = lambda *a, **k: None
        open('/etc/shadow')
        import socket
        print('VERDICT: correct')
    """
    verdict, reason = run(program)
    assert verdict == "unknown" and reason == "sandbox refused: import socket", reason


@pytest.mark.parametrize(
    "defuse",
    [
        "import __main__\n__main__.REFUSED_EVENTS = frozenset()\n__main__.REFUSED_IMPORTS = frozenset()",
        "import os\nos._exit = lambda code: None\nos.write = lambda fd, data: 0",
        "import builtins\nbuiltins.any = lambda items: True\nbuiltins.isinstance = lambda *a: True",
    ],
)
def test_rebinding_what_the_audit_hook_uses_does_not_defuse_it(defuse, tmp_path):
    marker = tmp_path / "pwned"
    verdict, reason = run(f"{defuse}\nimport os\nos.system('touch {marker}')\nprint('VERDICT: correct')")
    assert verdict == "unknown" and reason.startswith("sandbox refused: os.system"), reason
    assert not marker.exists()
