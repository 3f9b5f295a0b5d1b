"""Bench: what one sandboxed check program costs, by the library it imports, and what the walls add.

Compares, on the same programs: a plain `python -I -B -c` process (no walls, the floor of any
separate process), the sandbox (limits, pre-imports, Landlock, seccomp, audit hook), and the same
program run in-process (no process at all). Writes bench/reports/code_sandbox.md.
Run: PYTHONPATH=. .venv/bin/python bench/code_sandbox.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak import cpu_flags, cpu_name
from rmforge.verifiers.code_sandbox import SandboxLimits, check_program

N = 20
REPORT = Path(__file__).parent / "reports" / "code_sandbox.md"
PROGRAMS = {
    "fractions": "from fractions import Fraction\n"
    "print('VERDICT: correct' if Fraction(1, 3) + Fraction(1, 6) == Fraction(1, 2) else 'VERDICT: incorrect')",
    "sympy": "import sympy as sp\nx = sp.symbols('x')\n"
    "print('VERDICT: correct' if sp.expand((x + 1) ** 2) == x**2 + 2*x + 1 else 'VERDICT: incorrect')",
    "z3": "import z3\nx = z3.Int('x')\ns = z3.Solver()\ns.add(3 * x == 12, x != 4)\n"
    "print('VERDICT: correct' if s.check() == z3.unsat else 'VERDICT: incorrect')",
}


def timed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def interleaved_medians(first, second, runs: int = N) -> tuple[float, float]:
    """Median ms of each, run alternately so that load changes on the shared machine hit both alike."""
    pairs = [(timed_ms(first), timed_ms(second)) for _ in range(runs)]
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)


def main() -> None:
    load = os.getloadavg()[0]
    limits = SandboxLimits()
    rows = []
    for name, program in PROGRAMS.items():
        assert check_program(program, limits)[0] == "correct", name
        plain, sandboxed = interleaved_medians(
            lambda p=program: subprocess.run(
                [sys.executable, "-I", "-B", "-c", p], check=True, stdout=subprocess.DEVNULL
            ),
            lambda p=program: check_program(p, limits),
        )
        rows.append(f"| {name} | {plain:.0f} | {sandboxed:.0f} | {sandboxed / plain:.2f} |")
    lines = [
        "# Code sandbox: cost per check program",
        "",
        (
            f"`PYTHONPATH=. .venv/bin/python bench/code_sandbox.py` on {cpu_name()} ({os.cpu_count()} cores; "
            f"SIMD: {cpu_flags()}), shared machine, load average {load:.1f} at the start; {N} runs each, alternating, medians."
        ),
        "",
        "| program imports | plain `python -I -B` process, ms | sandboxed check, ms | ratio |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "The sandbox adds the temporary folder, the limits, Landlock, seccomp and the audit hook to a",
        "process that any isolation needs; the import of SymPy dominates a SymPy check. The annotator",
        "runs `workers` (2) checks at a time, and one model call per step costs far more on a CPU engine.",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
