"""The store-throughput bench at a CI size: it runs, and both ways of holding the store wrote the
same labels (the bench exits non-zero otherwise, or on a duplicate key)."""

from __future__ import annotations

import pytest

from tests.benches import run_bench

pytestmark = pytest.mark.slow  # bench/store_throughput.py in a subprocess


def test_store_throughput_at_a_small_size_runs_and_reports_every_row(tmp_path) -> None:
    report = tmp_path / "store_throughput.md"
    done = run_bench("store_throughput.py", "2000", "--z3-batches", "1", "--report", str(report))
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
