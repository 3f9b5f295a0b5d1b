"""The soak bench at a CI size: it runs, and the store it leaves is consistent."""

from __future__ import annotations

import pytest

from tests.benches import run_bench

pytestmark = pytest.mark.slow  # bench/soak.py in a subprocess


def test_soak_at_a_small_size_leaves_a_consistent_store(tmp_path) -> None:
    report = tmp_path / "soak.md"
    done = run_bench("soak.py", "1000", "--report", str(report), "--db", str(tmp_path / "soak.duckdb"))
    assert done.returncode == 0, done.stderr[-3000:]  # the bench exits non-zero on any inconsistency
    text = report.read_text()
    assert "| rollouts | 1,000 |" in text
    for check in (
        "rollouts without steps",
        "rollouts without an answer label",
        "rollouts without a current answer done marker",
        "rollouts without a current z3_arith done marker",
        "duplicate keys in step_labels",
        "duplicate keys in annotator_costs",
    ):
        assert f"| {check} | 0 |" in text, check
    assert "| z3_arith step labels on rollouts | 1,000 |" in text
