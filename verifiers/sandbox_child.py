"""The child side of `verifiers/code_sandbox.py`: runs one model-written check program.

Run as `python -I -B sandbox_child.py WORKDIR CPU_S MEMORY_MB REQUIRE_KERNEL`; the program is
`WORKDIR/check.py`. Stdlib only, and never imported by rmforge: it is the process that gets walled in.

Order matters: resource limits, then the libraries the program names (SymPy, Z3) are imported, then
the walls go up, and only then does the program run, so nothing it does happens outside them:

1. Kernel (enforced by Linux, whatever the program does):
   - seccomp (x86-64): process creation (fork, vfork, clone without CLONE_THREAD, execve), sockets,
     io_uring, ptrace, signals to other processes, chmod/chown/utime and namespace or mount calls
     kill the process with SIGSYS;
   - Landlock: files are readable only under the Python installation, its site-packages and the system
     library folders, writable only inside WORKDIR.
   With REQUIRE_KERNEL=1 the program is not run when either cannot be installed here.
2. Audit hook (in the interpreter; Python's docs say it is no sandbox, the kernel layer is the wall):
   refuses the same things earlier, at the Python call, and exits at once with a readable reason
   that the program cannot catch or overwrite.
3. Resource limits: CPU seconds, address space, file size, open files, no core dumps.
"""

import ctypes
import os
import platform
import resource
import sys
from collections.abc import Callable
from typing import Any

REFUSED_EXIT = 86
UNAVAILABLE_EXIT = 87
LAYERS_LINE = "rmforge-sandbox layers: "
REFUSAL_LINE = "rmforge-sandbox refused: "
UNAVAILABLE_LINE = "rmforge-sandbox unavailable: "

# --- seccomp ----------------------------------------------------------------------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
CLONE_THREAD = 0x00010000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO_ENOSYS = 0x00050000 | 38
RET_ALLOW = 0x7FFF0000
# x86-64 numbers of the system calls a check program never needs and an escape does.
KILLED_SYSCALLS = {
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53, "fork": 57,
    "vfork": 58, "execve": 59, "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94,
    "ptrace": 101, "utime": 132, "mknod": 133, "personality": 135, "pivot_root": 155, "chroot": 161,
    "mount": 165, "umount2": 166, "tkill": 200, "utimes": 235, "add_key": 248, "request_key": 249,
    "keyctl": 250, "mknodat": 259, "fchownat": 260, "futimesat": 261, "fchmodat": 268, "unshare": 272,
    "utimensat": 280, "accept4": 288, "perf_event_open": 298, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "bpf": 321, "execveat": 322, "userfaultfd": 323, "pidfd_send_signal": 424,
    "io_uring_setup": 425, "pidfd_open": 434, "fchmodat2": 452,
}  # fmt: skip
CLONE, CLONE3, KILL, TGKILL = 56, 435, 62, 234


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def seccomp_program(pid: int) -> list[tuple[int, int, int, int]]:
    """The BPF filter: (code, jump-if-true, jump-if-false, k) per instruction."""
    load_word, jump_eq, jump_ge, jump_set, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill = ("ret", RET_ALLOW), ("ret", RET_KILL_PROCESS)
    # Symbolic program; jumps name a label, resolved to relative offsets below.
    program: list[tuple | str] = [
        (load_word, 4),  # arch
        (jump_eq, AUDIT_ARCH_X86_64, None, "kill"),
        (load_word, 0),  # syscall number
        (jump_ge, 0x40000000, "kill", None),  # the x32 ABI's numbers
        *[(jump_eq, number, "kill", None) for number in KILLED_SYSCALLS.values()],
        # glibc falls back from clone3 (whose flags BPF cannot read) to clone on ENOSYS.
        (jump_eq, CLONE3, "enosys", None),
        (jump_eq, CLONE, "clone", None),
        (jump_eq, KILL, "own_pid", None),
        (jump_eq, TGKILL, "own_pid", None),
        allow,
        "clone",
        (load_word, 16),  # args[0] low word: the clone flags; a thread shares the process
        (jump_set, CLONE_THREAD, "allow", "kill"),
        "own_pid",
        (load_word, 16),  # args[0]: the target pid; only this process may be signalled
        (jump_eq, pid, "allow", "kill"),
        "allow",
        allow,
        "kill",
        kill,
        "enosys",
        ("ret", RET_ERRNO_ENOSYS),
    ]
    labels: dict[str, int] = {}
    position = 0
    for entry in program:
        if isinstance(entry, str):
            labels[entry] = position
        else:
            position += 1
    resolved, position = [], 0
    for entry in program:
        if isinstance(entry, str):
            continue
        if entry[0] == "ret":
            resolved.append((ret, 0, 0, entry[1]))
        elif entry[0] == load_word:
            resolved.append((load_word, 0, 0, entry[1]))
        else:
            code, k, if_true, if_false = entry
            offset = [0 if label is None else labels[label] - position - 1 for label in (if_true, if_false)]
            resolved.append((code, offset[0], offset[1], k))
        position += 1
    return resolved


def install_seccomp(libc: ctypes.CDLL) -> str | None:
    """None when installed, else why not."""
    if platform.machine() != "x86_64":
        return f"seccomp filter written for x86-64, not {platform.machine()}"
    program = seccomp_program(os.getpid())
    filters = (SockFilter * len(program))(*[SockFilter(*instruction) for instruction in program])
    fprog = SockFprog(len(program), filters)
    pr_set_seccomp, seccomp_mode_filter = 22, 2
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
        return f"seccomp: {os.strerror(ctypes.get_errno())}"
    return None


# --- Landlock ---------------------------------------------------------------------------------------

SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
READ_ACCESS = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def handled_access(abi: int) -> int:
    access = (1 << 13) - 1  # ABI 1: execute .. make symlink
    if abi >= 2:
        access |= 1 << 13  # refer (rename/link across folders)
    if abi >= 3:
        access |= 1 << 14  # truncate
    if abi >= 5:
        access |= 1 << 15  # ioctl on devices
    return access


def install_landlock(libc: ctypes.CDLL, readable: list[str], writable: list[str]) -> str:
    """`landlock-abi-N` when installed, else why not."""
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    abi = syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return f"Landlock: {os.strerror(ctypes.get_errno())}"
    handled = handled_access(abi)
    attr = RulesetAttr(handled)
    ruleset = syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0)
    if ruleset < 0:
        return f"Landlock ruleset: {os.strerror(ctypes.get_errno())}"
    rules = [(path, READ_ACCESS) for path in readable] + [(path, handled) for path in writable]
    for path, access in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a folder this machine does not have
        # A file (not a folder) accepts only file rights.
        allowed = access if os.path.isdir(path) else access & ((1 << 0) | (1 << 1) | (1 << 2) | (1 << 14))
        rule = PathBeneathAttr(allowed, fd)
        if syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
            return f"Landlock rule for {path}: {os.strerror(ctypes.get_errno())}"
        os.close(fd)
    if syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
        return f"Landlock restrict: {os.strerror(ctypes.get_errno())}"
    os.close(ruleset)
    return f"landlock-abi-{abi}"


# --- audit hook -------------------------------------------------------------------------------------

REFUSED_EVENTS = frozenset(
    {
        "os.system", "os.exec", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "subprocess.Popen",
        "pty.spawn", "os.kill", "os.killpg", "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod",
        "os.chown", "os.link", "os.symlink", "os.truncate", "os.utime", "os.chdir", "os.chflags",
        "os.setxattr", "os.removexattr", "shutil.rmtree", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "webbrowser.open", "sys.remote_exec",
    }
)  # fmt: skip
REFUSED_IMPORTS = frozenset(
    {"ctypes", "_ctypes", "socket", "_socket", "ssl", "_ssl", "subprocess", "_posixsubprocess",
     "multiprocessing", "_multiprocessing", "pty", "select", "selectors", "mmap", "urllib.request", "http.client"}
)  # fmt: skip
# Foreign calls into libraries loaded before the walls went up (Z3) stay allowed; loading new
# code or reading raw memory does not.
ALLOWED_CTYPES_EVENTS = frozenset({"ctypes.call_function", "ctypes.cdata/buffer", "ctypes.create_string_buffer"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def refuse(what: str, write: Callable[[int, bytes], int] = os.write, exit_now: Callable[[int], Any] = os._exit) -> None:
    """Exit now with the reason: os._exit cannot be caught, and the line is written unbuffered.
    Both are bound at definition, so a program rebinding `os._exit` cannot defuse it."""
    write(1, f"\n{REFUSAL_LINE}{what}\n".encode("utf-8", "replace"))
    exit_now(REFUSED_EXIT)


def make_audit_hook(readable: tuple[str, ...], workdir: str) -> Callable[[str, tuple], None]:
    """The hook, with everything it uses bound in its closure: a program rebinding this module's
    globals, `os` functions or builtins cannot change what it refuses (it could only fool
    `os.path.realpath` by patching `posixpath`, and then Landlock still holds)."""
    refused_events, refused_imports, allowed_ctypes = REFUSED_EVENTS, REFUSED_IMPORTS, ALLOWED_CTYPES_EVENTS
    write_flags, realpath, fsdecode, any_, isinstance_ = WRITE_FLAGS, os.path.realpath, os.fsdecode, any, isinstance
    say_no, writable, readable = refuse, (workdir, "/dev/null"), (*readable, workdir)

    def within(path: str, roots: tuple[str, ...]) -> bool:
        return any_(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def hook(event: str, args: tuple) -> None:
        if event in refused_events or event.startswith("socket."):
            say_no(f"{event}{args!r}"[:300])
        elif event.startswith("ctypes.") and event not in allowed_ctypes:
            say_no(event)
        elif event == "import" and args[0] in refused_imports:
            say_no(f"import {args[0]}")
        elif event in ("open", "os.listdir", "os.scandir"):
            path, mode, flags = args if event == "open" else (args[0], "r", 0)
            if isinstance_(path, int):
                return  # an open file descriptor: its path was checked when it was opened
            path = realpath(fsdecode(path if path is not None else "."))
            writing = any_(c in mode for c in "wax+") if isinstance_(mode, str) else bool(flags & write_flags)
            if writing and not within(path, writable):
                say_no(f"open({path!r}) for writing outside the sandbox folder")
            if not writing and not within(path, readable):
                say_no(f"open({path!r}) for reading outside the Python installation and the sandbox folder")

    return hook


# --- main -------------------------------------------------------------------------------------------


def readable_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update(path for path in sys.path if path and os.path.isdir(path))
    roots.update(("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/dev/null", "/dev/urandom"))
    return sorted(os.path.realpath(root) for root in roots)


def main() -> None:
    workdir, cpu_s, memory_mb, require_kernel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    workdir = os.path.realpath(workdir)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with open(os.path.join(workdir, "check.py"), encoding="utf-8") as file:
        source = file.read()
    # Imported before the walls go up: Z3 loads its library through ctypes, which the walls forbid.
    import fractions  # noqa: F401
    import math  # noqa: F401

    if "sympy" in source:
        import sympy  # type: ignore[import-untyped]  # noqa: F401
    if "z3" in source:
        import z3  # noqa: F401
    readable = readable_roots()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs = 38
    layers: list[str] = []
    missing: list[str] = []
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        missing.append(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    else:
        landlock = install_landlock(libc, readable, [workdir, "/dev/null"])
        (layers if landlock.startswith("landlock-abi") else missing).append(landlock)
        seccomp = install_seccomp(libc)
        (missing.append(seccomp) if seccomp else layers.append("seccomp"))
    if missing and require_kernel:
        os.write(1, f"{UNAVAILABLE_LINE}{'; '.join(missing)}\n".encode())
        os._exit(UNAVAILABLE_EXIT)
    layers += ["audit-hook", "rlimits"]
    sys.stdout.write(LAYERS_LINE + ",".join(layers) + "\n")
    sys.stdout.flush()
    code = compile(source, "check.py", "exec")  # a SyntaxError ends here, before the hook: exit 1
    sys.addaudithook(make_audit_hook(tuple(readable), workdir))
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except Exception as error:  # noqa: BLE001  # the program's error is its result
        report_error(error)
        sys.exit(1)


def report_error(error: BaseException) -> None:
    """The error and its line in check.py; Python's own traceback would read this file, which the
    walls forbid."""
    line = None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == "check.py":
            line = trace.tb_lineno
        trace = trace.tb_next
    where = f" (check.py line {line})" if line is not None else ""
    sys.stdout.flush()
    sys.stderr.write(f"{type(error).__name__}{where}: {error}"[:1000] + "\n")


if __name__ == "__main__":
    main()
