"""The CLI's fixed cost for small commands, with and without a running Prefect server.

Without a server every command starts (and stops) a temporary Prefect server; with
`rmforge server start` commands talk to the running one. Measures wall time of
`rmforge import rollouts` (30 rows) and `rmforge annotate --annotator answer` as
separate processes, and the time the flow itself recorded in `runs`.

    python bench/cli_overhead.py [REPEATS]   -> bench/reports/cli_overhead.md
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "bench" / "reports" / "cli_overhead.md"
ROWS = 30
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def write_rollouts(path: Path) -> None:
    rows = []
    for i in range(ROWS):
        a, b = i + 2, i + 7
        answer = a + b if i % 3 else a + b + 1
        rows.append(
            {
                "problem_id": f"p{i}",
                "question": f"Sam has {a} pens and buys {b} more. How many?",
                "gold_answer": str(a + b),
                "model": "bench",
                "response": f"Step 1: {a} + {b} = {answer}\nThe answer is \\boxed{{{answer}}}",
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def rmforge(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rmforge.cli", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - started


def recorded_seconds(db: Path, flow: str) -> float:
    sys.path.insert(0, str(REPO))
    from rmforge.store import Store

    with Store(db, read_only=True) as store:
        row = store.rows("SELECT epoch(finished_at) - epoch(started_at) AS s FROM runs WHERE flow = ?", [flow])
    return row[0]["s"]


def measure(env: dict[str, str], work: Path, rollouts: Path, mode: str) -> list[dict[str, object]]:
    results = []
    for command, flow in (("import", "import-rollouts"), ("annotate", "annotate")):
        walls, flows = [], []
        for repeat in range(REPEATS):
            db = work / f"{mode}-{repeat}.duckdb"
            if command == "import":
                walls.append(rmforge(env, "import", "rollouts", str(rollouts), "--db", str(db)))
            else:
                walls.append(rmforge(env, "annotate", "--annotator", "answer", "--db", str(db)))
            flows.append(recorded_seconds(db, flow))
        results.append(
            {"mode": mode, "command": command, "wall": statistics.median(walls), "flow": statistics.median(flows)}
        )
    return results


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rollouts = work / "rollouts.jsonl"
        write_rollouts(rollouts)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PREFECT_HOME": str(work / "prefect"),
            "RMFORGE_STATE_DIR": str(work / "state"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        env.pop("PREFECT_API_URL", None)
        rmforge(env, "import", "rollouts", str(rollouts), "--db", str(work / "warmup.duckdb"))  # Prefect's DB setup
        results = measure(env, work, rollouts, "temporary server")
        started = time.perf_counter()
        rmforge(env, "server", "start")
        server_start = time.perf_counter() - started
        try:
            results += measure(env, work, rollouts, "rmforge server")
        finally:
            rmforge(env, "server", "stop")
    lines = [
        "# CLI overhead for small commands",
        "",
        f"`python bench/cli_overhead.py {REPEATS}`: median of {REPEATS} runs per cell; each command is a fresh "
        f"process on {ROWS} imported rollouts. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (AMD EPYC, AVX2 only, shared with other jobs: load average "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} over 1 / 5 / 15 min at the end); "
        f"Python {platform.python_version()}.",
        "",
        "| server | command | wall s | flow s (recorded in `runs`) | overhead s |",
        "|---|---|---|---|---|",
        *[
            f"| {r['mode']} | {r['command']} | {r['wall']:.1f} | {r['flow']:.1f} | {r['wall'] - r['flow']:.1f} |"
            for r in results
        ],
        "",
        f"`rmforge server start` itself took {server_start:.1f} s (once). The overhead is Python and library "
        "imports, the Prefect client, and without a server the temporary server's start and stop.",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
