"""The store-throughput bench at a CI size: it runs, and both ways of holding the store wrote the
same labels (the bench exits non-zero otherwise, or on a duplicate key)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # bench/store_throughput.py in a subprocess

ROOT = Path(__file__).resolve().parent.parent


def test_store_throughput_at_a_small_size_runs_and_reports_every_row(tmp_path) -> None:
    report = tmp_path / "store_throughput.md"
    done = subprocess.run(
        [sys.executable, "bench/store_throughput.py", "2000", "--z3-batches", "1", "--report", str(report)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    for row in (
        "| answer | per step | 2 |",
        "| answer | held | 2 |",
        "| z3_arith | per step | 1 |",
        "| z3_arith | held | 1 |",
    ):
        assert row in text, row
    assert "| answer | 4,000 |" in text  # 2,000 outcome labels and 2,000 done markers
