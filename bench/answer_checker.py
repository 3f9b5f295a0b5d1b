"""Bench: what the bounds of the final-answer checker cost per call.

Compares, on the same answer pairs: the in-process fast path for plain numbers,
math-verify through the bounded worker, and math-verify called directly in-process
(the unbounded way it ran before); plus one worker round trip and a worker restart
after a timeout. Writes bench/reports/answer_checker.md.
Run: PYTHONPATH=. .venv/bin/python bench/answer_checker.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak import cpu_flags, cpu_name
from rmforge.verifiers import answers

N = 300
REPORT = Path(__file__).parent / "reports" / "answer_checker.md"


def per_call_ms(fn, calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    load = os.getloadavg()[0]
    answers.grade_response(r"\boxed{\frac{1}{2}}", "0.5")  # start the worker
    rows = {
        "plain number (fast path, in-process)": per_call_ms(
            lambda i: answers.grade_response(rf"The answer is \boxed{{{i}}}.", "72"), N * 10
        ),
        "symbolic, bounded worker (distinct pairs, no cache hit)": per_call_ms(
            lambda i: answers.grade_response(rf"\boxed{{\frac{{{i}}}{{7}}}}", r"\frac{3}{7}"), N
        ),
        "symbolic, math-verify in-process (no bound)": per_call_ms(
            lambda i: answers.compare_with_math_verify(r"\frac{3}{7}", False, rf"\frac{{{i + N}}}{{7}}", False), N
        ),
        "worker round trip (worker-side cache hit)": per_call_ms(
            lambda i: answers._MATH_VERIFY.call("1", False, "x", False, timeout_s=5), N
        ),
        "repeated pair (parent-side cache hit)": per_call_ms(
            lambda i: answers.grade_response(r"\boxed{\frac{2}{7}}", r"\frac{3}{7}"), N * 10
        ),
    }
    start = time.perf_counter()
    answers.grade_response(r"\boxed{9^{9^{9^{9}}}}", "2", timeout_s=1)
    timeout_wall = time.perf_counter() - start
    start = time.perf_counter()
    answers.grade_response(r"\boxed{\frac{5}{9}}", "0.5")
    restart = time.perf_counter() - start
    lines = [
        "# Final-answer checker: cost of the bounds",
        "",
        (
            f"`PYTHONPATH=. .venv/bin/python bench/answer_checker.py` on {cpu_name()} ({os.cpu_count()} cores; "
            f"SIMD: {cpu_flags()}), shared machine, load average {load:.1f} at the start."
        ),
        "",
        "| call | ms per call |",
        "|---|---:|",
        *(f"| {name} | {ms:.2f} |" for name, ms in rows.items()),
        "",
        (
            f"A `9^{{9^{{9^9}}}}` answer with `timeout_s=1`: {timeout_wall:.2f} s wall (killed at the deadline), "
            f"then the next symbolic call starts a fresh worker: {restart:.2f} s."
        ),
        "",
        "The worker adds the round trip over the in-process call; plain numbers (most GSM8K answers,",
        "the Monte Carlo hot path) never reach it.",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
