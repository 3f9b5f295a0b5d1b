"""The CLI's fixed cost for small flow commands: a temporary Prefect server per command (the
baseline, `--no-shared-server`) against the background server the first command starts and later
commands share.

Each command is a fresh process on a small store: `rmforge import rollouts` (32 rows),
`rmforge import processbench` (32 ProcessBench-shaped rows, with the human labels) and
`rmforge annotate --annotator answer`. For each it records the wall time, the command's CPU
seconds (user + system of the process; a server it starts in the background is not counted) and
the time the flow itself recorded in `runs`; overhead = wall - flow. The first command on a
machine with no server pays for starting the shared one: measured apart, `REPEATS` times.

    python bench/cli_overhead.py [REPEATS]   -> bench/reports/cli_overhead.md
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.soak import cpu_flags, cpu_name  # noqa: E402

REPORT = REPO / "bench" / "reports" / "cli_overhead.md"
ROWS = 32
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
COMMANDS = ("import rollouts", "import processbench", "annotate")
FLOWS = {"import rollouts": "import-rollouts", "import processbench": "import-labelled", "annotate": "annotate"}


def write_inputs(work: Path) -> tuple[Path, Path]:
    """Rollouts (JSONL) and a ProcessBench-shaped file with its gold answers beside it."""
    rollouts, bench_rows, gold = [], [], {}
    for i in range(ROWS):
        a, b = i + 2, i + 7
        answer = a + b if i % 3 else a + b + 1
        question = f"Sam has {a} pens and buys {b} more. How many?"
        rollouts.append(
            {
                "problem_id": f"p{i}",
                "question": question,
                "gold_answer": str(a + b),
                "model": "bench",
                "response": f"Step 1: {a} + {b} = {answer}\nThe answer is \\boxed{{{answer}}}",
            }
        )
        bench_rows.append(
            {
                "id": f"pb-{i}",
                "generator": "bench",
                "problem": question,
                "steps": [f"{a} + {b} = {answer}.", f"The answer is {answer}."],
                "label": -1 if answer == a + b else 0,
            }
        )
        gold[f"pb-{i}"] = str(a + b)
    rollouts_file = work / "rollouts.jsonl"
    rollouts_file.write_text("\n".join(json.dumps(r) for r in rollouts) + "\n")
    processbench_file = work / "bench.json"
    processbench_file.write_text(json.dumps(bench_rows))
    (work / "bench_gold_answers.json").write_text(json.dumps(gold))
    return rollouts_file, processbench_file


def rmforge(env: dict[str, str], *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rmforge.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"rmforge {' '.join(args)} failed: {done.stderr.decode()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def recorded_seconds(db: Path, flow: str) -> float:
    from rmforge.store import Store

    with Store(db, read_only=True) as store:
        row = store.rows("SELECT epoch(finished_at) - epoch(started_at) AS s FROM runs WHERE flow = ?", [flow])
    return row[-1]["s"]


def command_args(command: str, db: Path, rollouts: Path, processbench: Path) -> list[str]:
    if command == "import rollouts":
        return ["import", "rollouts", str(rollouts), "--db", str(db)]
    if command == "import processbench":
        return ["import", "processbench", str(processbench), "--db", str(db)]
    return ["annotate", "--annotator", "answer", "--db", str(db)]


def measure(env: dict[str, str], work: Path, inputs: tuple[Path, Path], mode: str, flags: list[str]) -> list[dict]:
    """Median wall, CPU and flow seconds per command over REPEATS fresh stores."""
    samples: dict[str, list[tuple[float, float, float]]] = {c: [] for c in COMMANDS}
    for repeat in range(REPEATS):
        for command in COMMANDS:
            store = "pb" if command == "import processbench" else "r"
            db = work / f"{mode.replace(' ', '-')}-{store}-{repeat}.duckdb"
            wall, cpu = rmforge(env, *flags, *command_args(command, db, *inputs))
            samples[command].append((wall, cpu, recorded_seconds(db, FLOWS[command])))
    return [
        {
            "mode": mode,
            "command": command,
            "wall": statistics.median(s[0] for s in runs),
            "cpu": statistics.median(s[1] for s in runs),
            "flow": statistics.median(s[2] for s in runs),
        }
        for command, runs in samples.items()
    ]


def first_commands(env: dict[str, str], work: Path, inputs: tuple[Path, Path]) -> list[float]:
    """Wall seconds of an `import rollouts` that finds no server and starts the shared one."""
    walls = []
    for repeat in range(REPEATS):
        rmforge(env, "server", "stop")
        db = work / f"first-{repeat}.duckdb"
        walls.append(rmforge(env, *command_args("import rollouts", db, *inputs))[0])
    return walls


def main() -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = write_inputs(work)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PREFECT_HOME": str(work / "prefect"),
            "RMFORGE_STATE_DIR": str(work / "state"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        for name in ("PREFECT_API_URL", "RMFORGE_SHARED_SERVER"):
            env.pop(name, None)
        # Prefect's database set-up, once, so that no mode pays it.
        rmforge(env, "--no-shared-server", *command_args("import rollouts", work / "warmup.duckdb", *inputs))
        try:
            first = first_commands(env, work, inputs)
            shared = measure(env, work, inputs, "shared server", [])
        finally:
            rmforge(env, "server", "stop")
        temporary = measure(env, work, inputs, "temporary server", ["--no-shared-server"])
    load_after = os.getloadavg()
    rows = []
    for base, new in zip(temporary, shared, strict=True):
        rows.append(
            f"| {new['command']} | {base['wall']:.2f} | {base['cpu']:.2f} | {new['wall']:.2f} | {new['cpu']:.2f} "
            f"| {new['flow']:.2f} | {base['wall'] - base['flow']:.2f} | {new['wall'] - new['flow']:.2f} "
            f"| {base['wall'] / new['wall']:.1f}x |"
        )
    lines = [
        "# CLI overhead for small flow commands",
        "",
        f"`python bench/cli_overhead.py {REPEATS}`: median of {REPEATS} runs per cell; each command is a fresh "
        f"process on a store of {ROWS} rows. Machine: {cpu_name()}, {os.cpu_count()} cores (flags: {cpu_flags()}); "
        f"Python {platform.python_version()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(1 min).",
        "",
        "Baseline: a temporary Prefect server per command (`--no-shared-server`, what every command did before). "
        "Shared: the background server the first command started, reused. Overhead = wall - the flow's own "
        "time recorded in `runs`.",
        "",
        "| command | temporary: wall s | temporary: CPU s | shared: wall s | shared: CPU s | flow s "
        "| temporary: overhead s | shared: overhead s | wall, temporary / shared |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"The first command on a machine with no server (it starts the shared one, then runs): "
        f"{', '.join(f'{w:.1f}' for w in first)} s wall for `import rollouts`.",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
