"""Running a bench script the way its README line does, for the tests that run benches at a CI size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`PYTHONPATH=. python bench/<script> args...` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
