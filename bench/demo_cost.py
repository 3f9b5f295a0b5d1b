"""Bench: what `make demo` costs, per stage, in wall time and CPU time.

Runs the demo's command (`rmforge run --export data/exports`, PipelineConfig defaults)
on a fresh database, sampling the user+system CPU time of the whole process tree
(CLI, temporary Prefect server, vLLM engine) every second. Stage boundaries come
from the store: the `runs` rows of generate / annotate / curate / export, and each
annotator's last label inside annotate. CPU seconds per stage are what a quiet
machine would need at most if nothing ran in parallel, so on a machine shared with
other work they bound the demo's cost better than wall time. Writes
bench/reports/demo_cost.md.
Run: PYTHONPATH=$PWD .venv/bin/python bench/demo_cost.py [rmforge run options, e.g. --config FILE]
     PYTHONPATH=$PWD .venv/bin/python bench/demo_cost.py --report   (rewrite the report)
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPORT = Path(__file__).parent / "reports" / "demo_cost.md"
DB = ROOT / "data" / "demo-bench.duckdb"
EXPORT_DIR = ROOT / "data" / "exports"
MEASUREMENT = DB.with_suffix(".cpu.json")  # kept beside the database: `--report` re-reads it


def tree_cpu_seconds(root) -> float:
    """User+system time of `root` and its descendants, live or already reaped."""
    import psutil

    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


class CpuSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        import psutil

        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []  # (unix time, CPU seconds of the tree then)
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.done.is_set():
            try:
                self.samples.append((time.time(), tree_cpu_seconds(self.root)))
            except psutil.NoSuchProcess:
                return
            self.done.wait(1.0)


def cumulative(samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """CPU seconds spent since the start at each sample. The tree's total drops when a process
    exits unreaped by a parent in the tree (the engine's workers), so only rises are summed."""
    spent, out = 0.0, []
    for (_, before), (when, after) in zip([samples[0], *samples], samples):
        spent += max(after - before, 0.0)
        out.append((when, spent))
    return out


def cpu_at(series: list[tuple[float, float]], when: float) -> float:
    """CPU seconds spent by unix time `when` (the last sample before it)."""
    i = max(bisect.bisect_right([t for t, _ in series], when) - 1, 0)
    return series[i][1]


def stage_bounds(db: Path) -> list[tuple[str, float, float]]:
    """(stage, start, end) in unix time, from the runs table and label timestamps."""
    from rmforge.store import Store

    def unix(value: datetime) -> float:
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()

    with Store(str(db)) as store:
        runs = {r["flow"]: r for r in store.rows("SELECT flow, started_at, finished_at FROM runs")}
        label_ends = store.rows(
            "SELECT annotator, max(t) AS t FROM (SELECT annotator, labeled_at AS t FROM step_labels "
            "UNION ALL SELECT annotator, labeled_at FROM outcome_labels) GROUP BY annotator ORDER BY t"
        )
    stages = [
        ("generate (incl. engine start)", unix(runs["generate"]["started_at"]), unix(runs["generate"]["finished_at"]))
    ]
    start = unix(runs["annotate"]["started_at"])
    for row in label_ends:
        stages.append((f"annotate: {row['annotator']}", start, unix(row["t"])))
        start = unix(row["t"])
    stages.append(("annotate: store + report", start, unix(runs["annotate"]["finished_at"])))
    for flow in ("curate", "export"):
        stages.append((flow, unix(runs[flow]["started_at"]), unix(runs[flow]["finished_at"])))
    return stages


def pipeline_config(db: Path):
    """The configuration the measured run used, as the store recorded it."""
    from rmforge.schemas.config import PipelineConfig
    from rmforge.store import Store

    with Store(str(db)) as store:
        row = store.rows("SELECT config FROM runs WHERE flow = 'pipeline'")[0]
    return PipelineConfig.model_validate_json(row["config"])


def counts(db: Path) -> dict[str, int]:
    from rmforge.store import Store

    with Store(str(db)) as store:
        return {
            t: store.count(t)
            for t in ("rollouts", "steps", "step_labels", "outcome_labels", "preference_pairs", "process_examples")
        }


def measure(run_options: list[str]) -> dict:
    """Run the demo command on a fresh database, sampling its CPU time; saved to MEASUREMENT."""
    for stale in (DB, DB.with_name(DB.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(EXPORT_DIR, ignore_errors=True)
    load_before = uptime()
    command = [sys.executable, "-m", "rmforge.cli", "run", "--db", str(DB), "--export", str(EXPORT_DIR), *run_options]
    t0 = time.time()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = CpuSampler(proc.pid)
    sampler.start()
    output = proc.stdout.read()
    proc.wait()
    t1 = time.time()
    print(output)
    sampler.done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"demo failed (exit {proc.returncode}):\n{output[-4000:]}")
    measurement = {
        "run_options": run_options,
        "start": t0,
        "end": t1,
        "load_before": load_before,
        "load_after": uptime(),
        "samples": sampler.samples,
    }
    MEASUREMENT.write_text(json.dumps(measurement))
    return measurement


def report(measurement: dict) -> None:
    run_options, t0, t1 = measurement["run_options"], measurement["start"], measurement["end"]
    series = cumulative(measurement["samples"])
    config = pipeline_config(DB)
    stages = stage_bounds(DB)
    stages = [
        ("start: imports, Prefect server", t0, stages[0][1]),
        *stages,
        ("finish: summary, Prefect server stop", stages[-1][2], t1),
    ]
    rows = [
        f"| {stage} | {end - start:.0f} | {cpu_at(series, end) - cpu_at(series, start):.0f} |"
        for stage, start, end in stages
    ]
    lines = [
        "# What `make demo` costs",
        "",
        f"`{' '.join(['rmforge run --export data/exports', *run_options])}`"
        f"{'' if run_options else ' (the PipelineConfig defaults)'}: {config.problems.count} "
        f"{config.problems.kind} problems x {config.sampling.n} samples (max_tokens {config.sampling.max_tokens}), "
        f"annotators {', '.join(config.annotators)} (options {config.annotator_options}), "
        f"generator dtype `{config.generator.dtype}`; model already converted, fresh database. "
        f"{os.cpu_count()} CPUs: `{_model_name()}`.",
        "",
        "| stage | wall s | CPU s |",
        "|---|---|---|",
        *rows,
        f"| **whole command** | **{t1 - t0:.0f}** | **{series[-1][1]:.0f}** |",
        "",
        f"Load before: `{measurement['load_before']}`  ",
        f"Load after: `{measurement['load_after']}`",
        "",
        "CPU s is user+system time of the process tree (CLI, Prefect server, vLLM engine), sampled "
        "every second; on a machine shared with other work, wall time is inflated by the load, CPU "
        "time much less. The vLLM engine keeps both cores busy on a quiet machine (about 2 CPU s per "
        "second), the Python stages about one.",
        "",
        "Counts: " + ", ".join(f"{t} {n}" for t, n in counts(DB).items()),
        "",
        "Reproduce: `PYTHONPATH=$PWD .venv/bin/python bench/demo_cost.py` "
        "(`--report` rewrites this file from the last measurement)",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _model_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    if sys.argv[1:] == ["--report"]:
        report(json.loads(MEASUREMENT.read_text()))
    else:
        report(measure(sys.argv[1:]))
