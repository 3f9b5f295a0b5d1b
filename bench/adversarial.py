"""Adversarial run: SIGKILL every stage at several points, rerun, and compare with a clean run.

1. Reference: a fresh store; `rmforge import rollouts` of N synthetic rollouts, `annotate
   --annotator answer,z3_arith`, `curate --annotators answer,z3_arith`, `export`; every table
   snapshotted (row count and a content hash without run ids, timestamps and `runs`).
2. Kill points: each command of the pipeline is started as a real process (a session of its
   own), SIGKILLed (it alone) at a point, and every process descended from it (recorded with
   psutil just before the kill) must be gone within ORPHAN_WAIT_S; then the same command is
   rerun to completion. Commands that only add what is missing (import, annotate) are killed
   on forks of the second store (copies taken between commands) so that each kill lands on
   work still to do; curate and export rebuild, so their kills follow each other on the
   second store itself. `rmforge run` (the packaged model on vLLM) is killed once its engine
   processes run, on a store of its own.
3. Concurrent writers: two `annotate`s at once on one store, and an import while an
   `annotate` runs.
4. Every store is compared with the reference (the tables its commands write) and checked
   for duplicate keys (`schemas/tables.py` primary keys).
5. Cross-origin: requests with a foreign Origin or Host to `rmforge server start` (the
   Prefect server every command here uses) and `rmforge review`; all must be refused.

Writes bench/reports/adversarial.md. The default sizes take about 10 minutes on 2 shared cores.

Run: PYTHONPATH=. .venv/bin/python bench/adversarial.py [--rollouts N] [--report PATH] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.soak import synthetic_rows  # noqa: E402  (GSM8K-style rollouts, a quarter with a slip)
from rmforge.schemas.tables import TABLES  # noqa: E402
from rmforge.store import Store  # noqa: E402

N_ROLLOUTS = 3_000  # rows of the imported JSONL (four samples per problem)
ANNOTATORS = "answer,z3_arith"
HEARTBEAT_S = "1"  # a killed run counts as crashed after 3 missed beats, so reruns take its claims over
ORPHAN_WAIT_S = 10.0
COMMAND_TIMEOUT_S = 420
# When each kill lands. ("flow", f): f x the reference command's flow time (from its first opening of the store to its exit) after
# the command first has the store open (psutil open_files);
# ("workers", k): once k label worker processes run; ("vllm", 0): once a VLLM::EngineCore or
# VLLM::Worker process runs. `fork`: killed on a copy of the second store taken before the
# command (import and annotate add only what is missing, so a kill needs work left to do).
KILL_POINTS = [
    {"stage": "import", "when": ("flow", 0.70), "fork": False},  # 1 mid-way
    {"stage": "import", "when": ("flow", 0.90), "fork": True},  # 2 late
    {"stage": "annotate", "when": ("flow", 0.35), "fork": False},  # 3
    {"stage": "annotate", "when": ("flow", 0.60), "fork": True},  # 4
    {"stage": "annotate", "when": ("flow", 0.85), "fork": True},  # 5
    {"stage": "annotate_workers", "when": ("workers", 2), "fork": True},  # 6 label worker processes
    {"stage": "curate", "when": ("flow", 0.45), "fork": False},  # 7
    {"stage": "export", "when": ("flow", 0.50), "fork": False},  # 8
    {"stage": "export", "when": ("flow", 0.85), "fork": False},  # 9
    {"stage": "run", "when": ("vllm", 0), "fork": False},  # 10 generation, packaged model
]
RUN_ARGS = ["--problems", "2", "--samples", "2"]
# Volatile columns left out of the content hash (and the `runs` table itself).
VOLATILE = {"run_id", "labeled_at", "created_at", "started_at", "finished_at", "heartbeat_at", "claimed_at"}
# The tables each command writes: a fork is compared on what its commands wrote.
IMPORT_TABLES = ["problems", "rollouts", "steps", "quarantine"]
LABEL_TABLES = IMPORT_TABLES + ["step_labels", "outcome_labels", "critiques", "annotator_costs", "batch_claims"]
REPORT = Path(__file__).parent / "reports" / "adversarial.md"
CPU_FLAGS = ["avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "fma", "f16c"]


# ---------------------------------------------------------------- processes


@dataclass
class Cli:
    """Runs `rmforge` of this checkout in WORK, with the state folder of a server of its own."""

    work: Path
    env: dict[str, str] = field(init=False)
    started: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "RMFORGE_STATE_DIR": str(self.work / "state"),
            "PREFECT_HOME": str(self.work / "prefect"),
            "RMFORGE_HEARTBEAT_S": HEARTBEAT_S,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        self.env.pop("PREFECT_API_URL", None)
        self.env.pop("RMFORGE_DB", None)

    def argv(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "rmforge.cli", *map(str, args)]

    def start(self, args: list[str], log: Path) -> subprocess.Popen:
        with open(log, "w") as err:
            process = subprocess.Popen(
                self.argv(args),
                env=self.env,
                cwd=self.work,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        self.started.append(process)
        return process

    def run(self, args: list[str], timeout: float = COMMAND_TIMEOUT_S) -> tuple[int, str, str, float]:
        """Run to the end: (exit code, stdout, stderr tail, seconds)."""
        t0 = time.monotonic()
        process = subprocess.Popen(
            self.argv(args),
            env=self.env,
            cwd=self.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.started.append(process)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
        return process.returncode, out, err[-2000:], time.monotonic() - t0

    def end_leftovers(self) -> None:
        """SIGKILL the process groups of commands this script started that still run."""
        for process in self.started:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {process.name()} {' '.join(process.cmdline())[:160]}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The recorded processes alive now; a zombie waiting to be reaped is dead."""
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
        except psutil.NoSuchProcess:
            pass
    return left


def is_vllm(process: psutil.Process) -> bool:
    try:
        text = process.name() + " " + " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "VLLM::EngineCore" in text or "VLLM::Worker" in text or "EngineCore" in process.name()


def label_workers(processes: list[psutil.Process]) -> int:
    count = 0
    for process in processes:
        try:
            count += "spawn_main" in " ".join(process.cmdline())
        except psutil.Error:
            pass
    return count


# ---------------------------------------------------------------- stores


def snapshot(db: Path, tables: list[str] | None = None) -> dict[str, dict]:
    """Per table: rows, content hash (volatile columns left out), duplicate keys."""
    result = {}
    with Store(str(db), read_only=True) as store:
        for name, spec in TABLES.items():
            if name == "runs" or (tables is not None and name not in tables):
                continue
            columns = [c for c in spec.columns if c not in VOLATILE]
            try:
                rows = sorted(map(repr, store.execute(f"SELECT {', '.join(columns)} FROM {name}")))
                key = ", ".join(spec.primary_key)
                dupes = store.execute(
                    f"SELECT count(*) FROM (SELECT {key} FROM {name} GROUP BY {key} HAVING count(*) > 1)"
                )[0][0]
            except Exception as exc:  # noqa: BLE001  # a table a store never created
                result[name] = {"rows": None, "hash": f"error: {exc}"[:80], "dupes": 0}
                continue
            digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
            result[name] = {"rows": len(rows), "hash": digest, "dupes": dupes}
    return result


def count(db: Path, sql: str) -> int | str:
    try:
        with Store(str(db), read_only=True) as store:
            return store.execute(sql)[0][0]
    except Exception as exc:  # noqa: BLE001  # whatever stops the read is the answer
        return f"unreadable ({type(exc).__name__})"


def fork(source: Path, target: Path) -> Path:
    """A copy of a closed store (no command is running on it)."""
    shutil.copyfile(source, target)
    if Path(f"{source}.wal").exists():
        shutil.copyfile(f"{source}.wal", f"{target}.wal")
    return target


def export_digest(folder: Path) -> str:
    """Hash of the exported JSONL files (the dataset rows)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the run


def command_for(stage: str, db: Path, work: Path, source: Path, export_dir: Path) -> list[str]:
    return {
        "import": ["import", "rollouts", source, "--db", db, "--json"],
        "annotate": ["annotate", "--annotator", ANNOTATORS, "--db", db, "--json"],
        "annotate_workers": [
            "annotate",
            "--annotator",
            ANNOTATORS,
            "--workers",
            "2",
            "--batch-size",
            "100",
            "--db",
            db,
            "--json",
        ],
        "curate": ["curate", "--annotators", ANNOTATORS, "--db", db, "--json"],
        "export": ["export", "--db", db, "--out", export_dir, "--json"],
        "run": ["run", *RUN_ARGS, "--db", db, "--json"],
    }[stage]


PROGRESS_SQL = {
    "import": "SELECT count(*) FROM rollouts",
    "annotate": "SELECT count(*) FROM step_labels",
    "annotate_workers": "SELECT count(*) FROM step_labels",
    "curate": "SELECT count(*) FROM process_examples",
    "run": "SELECT count(*) FROM rollouts",
}


def holds(process: subprocess.Popen, db: Path) -> bool:
    """Whether the command has the store open now (its flow has started)."""
    try:
        return any(f.path == str(db) for f in psutil.Process(process.pid).open_files())
    except psutil.Error:
        return False


def run_timed(cli: Cli, args: list[str], db: Path, log: Path) -> tuple[int, str, float, float]:
    """Run to the end, noting when the command first had the store open: (exit code, stdout,
    seconds, seconds from that first open to the exit: the flow's own time)."""
    t0 = time.monotonic()
    process = cli.start(args, log)
    opened = None
    while process.poll() is None:
        if opened is None and holds(process, db):
            opened = time.monotonic()
        time.sleep(0.02)
    out = process.communicate()[0]
    end = time.monotonic()
    return process.returncode, out, end - t0, end - (opened or t0)


def kill_point(
    cli: Cli, point: dict, args: list[str], flow_s: float | None, db: Path, export_dir: Path | None, log: Path
) -> dict:
    """Start ARGS, SIGKILL it at the point, wait for its descendants, rerun to completion."""
    kind, value = point["when"]
    t0 = time.monotonic()
    process = cli.start(args, log)
    recorded: list[psutil.Process] = []
    deadline = t0 + COMMAND_TIMEOUT_S
    opened = None
    while time.monotonic() < deadline and process.poll() is None:
        recorded = descendants(process.pid)
        if kind == "flow" and opened is None and holds(process, db):
            opened = time.monotonic()
        if kind == "flow" and opened is not None and time.monotonic() >= opened + value * flow_s:
            break
        if kind == "workers" and label_workers(recorded) >= value:
            break
        if kind == "vllm" and any(is_vllm(p) for p in recorded):
            break
        time.sleep(0.02)
    recorded = descendants(process.pid) or recorded
    killed_after = time.monotonic() - t0
    exited_first = process.poll() is not None
    if not exited_first:
        process.send_signal(signal.SIGKILL)  # the command alone, as the OOM killer would
    process.wait()
    before = len(alive(recorded))
    wait_until = time.monotonic() + ORPHAN_WAIT_S
    while alive(recorded) and time.monotonic() < wait_until:
        time.sleep(0.1)
    orphans = [describe(p) for p in alive(recorded)]
    for leftover in alive(recorded):  # this script's own descendants: do not leave them running
        try:
            leftover.kill()
        except psutil.Error:
            pass
    time.sleep(max(0.0, 3 * float(HEARTBEAT_S) + 1 - (time.monotonic() - t0 - killed_after)))
    if export_dir is not None:
        progress = (
            f"{len(list(export_dir.rglob('*')))} paths in the export folder" if export_dir.exists() else "no folder"
        )
    else:
        progress = f"{count(db, PROGRESS_SQL[point['stage']])} rows ({PROGRESS_SQL[point['stage']].split('FROM ')[1]})"
    code, out, err, seconds = cli.run(args)
    into_flow = f"{killed_after - (opened - t0):.1f}" if opened else "?"
    when = {
        "flow": f"{into_flow} s after it opened the store ({value:.2f} x the reference's {flow_s:.1f} s); "
        f"{killed_after:.1f} s after start"
        if flow_s
        else "",
        "workers": f"{value} label workers up, {killed_after:.1f} s",
        "vllm": f"vLLM engine process up, {killed_after:.1f} s",
    }[kind]
    return {
        "stage": point["stage"],
        "command": " ".join(map(str, args[:4])),
        "fork": point["fork"],
        "when": when,
        "exited_before_kill": exited_first,
        "descendants": len(recorded),
        "alive_at_kill": before,
        "orphans": orphans,
        "progress_at_kill": progress,
        "rerun_code": code,
        "rerun_s": seconds,
        "rerun_err": "" if code == 0 else err,
        "rerun_summary": out.strip()[:400],
    }


def label_counts(out: str) -> dict[str, int]:
    try:
        summary = json.loads(out)
    except json.JSONDecodeError:
        return {}
    return {name: part.get("rollouts", 0) for name, part in summary.items() if isinstance(part, dict)}


def concurrent_annotates(cli: Cli, db: Path, work: Path) -> dict:
    args = command_for("annotate", db, work, Path(), Path())
    t0 = time.monotonic()
    first, second = (cli.start(args, work / f"concurrent-{k}.log") for k in (1, 2))
    outs = [p.communicate(timeout=COMMAND_TIMEOUT_S)[0] for p in (first, second)]
    counts = [label_counts(out) for out in outs]
    totals = {name: sum(c.get(name, 0) for c in counts) for name in ANNOTATORS.split(",")}
    return {
        "codes": [first.returncode, second.returncode],
        "counts": counts,
        "totals": totals,
        "seconds": time.monotonic() - t0,
    }


def import_during_annotate(cli: Cli, db: Path, work: Path, first_half: Path, second_half: Path) -> dict:
    """Import half A; then annotate and import half B at once; then annotate what is left."""
    pre = cli.run(command_for("import", db, work, first_half, Path()))
    t0 = time.monotonic()
    annotate = cli.start(command_for("annotate", db, work, Path(), Path()), work / "during-annotate.log")
    time.sleep(1.0)
    importer = cli.start(command_for("import", db, work, second_half, Path()), work / "during-import.log")
    outs = [p.communicate(timeout=COMMAND_TIMEOUT_S)[0] for p in (annotate, importer)]
    during_s = time.monotonic() - t0
    after = cli.run(command_for("annotate", db, work, Path(), Path()))
    return {
        "codes": [pre[0], annotate.returncode, importer.returncode, after[0]],
        "annotate_during": label_counts(outs[0]),
        "annotate_after": label_counts(after[1]),
        "import_during": outs[1].strip()[:300],
        "seconds": during_s,
    }


def cross_origin(cli: Cli, port: int, db: Path, work: Path) -> dict:
    """Foreign Origin / Host requests to the Prefect server and `rmforge review`; refused ones counted."""
    foreign_origin, foreign_host = {"Origin": "http://evil.example"}, {"Host": "evil.example"}
    api = f"http://127.0.0.1:{port}/api"
    probes = []

    def probe(server, what, method, url, expect, **kwargs):
        try:
            status = httpx.request(method, url, timeout=15, **kwargs).status_code
        except httpx.HTTPError as exc:
            status = f"error {type(exc).__name__}"
        refused = isinstance(status, int) and status >= 400 and status != 404
        probes.append({"server": server, "what": what, "status": status, "refused": refused, "expect": expect})

    probe("prefect", "GET /health, no Origin (control)", "GET", f"{api}/health", "answered")
    probe("prefect", "GET /health, foreign Origin", "GET", f"{api}/health", "refused", headers=foreign_origin)
    probe(
        "prefect",
        "OPTIONS /variables/ preflight, foreign Origin",
        "OPTIONS",
        f"{api}/variables/",
        "refused",
        headers={
            **foreign_origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    probe(
        "prefect",
        "POST /variables/, foreign Origin",
        "POST",
        f"{api}/variables/",
        "refused",
        headers=foreign_origin,
        json={"name": "planted", "value": "x"},
    )
    probe(
        "prefect",
        "POST /flow_runs/filter, foreign Origin",
        "POST",
        f"{api}/flow_runs/filter",
        "refused",
        headers=foreign_origin,
        json={},
    )
    probe("prefect", "GET /health, foreign Host", "GET", f"{api}/health", "refused", headers=foreign_host)
    probe(
        "prefect",
        "POST /variables/, foreign Host",
        "POST",
        f"{api}/variables/",
        "refused",
        headers=foreign_host,
        json={"name": "rebound", "value": "x"},
    )
    planted = {v["name"] for v in httpx.post(f"{api}/variables/filter", json={}, timeout=15).json()}

    review_port = free_port()
    review = cli.start(["review", "--db", db, "--port", review_port, "--reviewer", "adversary"], work / "review.log")
    url = f"http://127.0.0.1:{review_port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and review.poll() is None:
        try:
            httpx.get(url + "/static/review.css", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.3)
    rollout_id = str(count(db, "SELECT min(rollout_id) FROM rollouts"))
    form = {"rollout_id": rollout_id, "target": "step", "verdict": "incorrect", "step": "0"}
    probe("review", "GET /, no Origin (control)", "GET", url + "/", "answered")
    probe("review", "GET /, foreign Origin", "GET", url + "/", "refused", headers=foreign_origin)
    probe(
        "review",
        "POST /label, foreign Origin",
        "POST",
        url + "/label",
        "refused",
        headers={"HX-Request": "true", **foreign_origin},
        data=form,
    )
    probe("review", "GET /, foreign Host", "GET", url + "/", "refused", headers=foreign_host)
    probe(
        "review",
        "POST /label, foreign Host",
        "POST",
        url + "/label",
        "refused",
        headers={"HX-Request": "true", **foreign_host},
        data=form,
    )
    review.send_signal(signal.SIGINT)
    try:
        review.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(review.pid, signal.SIGKILL)
        review.wait()
    human = count(db, "SELECT count(*) FROM step_labels WHERE annotator = 'human'")
    return {"probes": probes, "planted_variables": sorted({"planted", "rebound"} & planted), "human_labels": human}


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return [f for f in CPU_FLAGS if f in flags]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=N_ROLLOUTS)
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    options = parser.parse_args()
    n = options.rollouts - options.rollouts % 4  # whole problems (four samples each)
    wall0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="rmforge-adversarial-"))
    cli = Cli(work)
    results: dict = {"n": n, "kills": [], "errors": []}
    port = free_port()
    try:
        rows = synthetic_rows(0, n)
        source = work / "rollouts.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        half = n // 2 - (n // 2) % 4
        first_half, second_half = work / "first-half.jsonl", work / "second-half.jsonl"
        first_half.write_text("".join(json.dumps(r) + "\n" for r in rows[:half]))
        second_half.write_text("".join(json.dumps(r) + "\n" for r in rows[half:]))

        step = lambda text: print(f"[{time.monotonic() - wall0:6.1f} s] {text}", flush=True)  # noqa: E731
        code, _, err, seconds = cli.run(["server", "start", "--port", port])
        results["server_start"] = (code, seconds)
        if code != 0:
            raise RuntimeError(f"rmforge server start failed: {err}")
        step(f"Prefect server on port {port} ({seconds:.1f} s)")

        # 1. Reference
        ref, ref_export = work / "reference.duckdb", work / "reference-export"
        reference_s, flow_s = {}, {}
        ref_imported = None  # the store as the import stage (the first) left it
        for stage in ("import", "annotate", "curate", "export", "annotate_workers"):
            db = ref if stage != "annotate_workers" else fork(ref_imported, work / "reference-workers.duckdb")
            code, _, reference_s[stage], flow_s[stage] = run_timed(
                cli, command_for(stage, db, work, source, ref_export), db, work / f"reference-{stage}.log"
            )
            if code != 0:
                raise RuntimeError(f"reference {stage} failed ({code}): see {work}/reference-{stage}.log")
            if stage == "import":
                ref_imported = fork(ref, work / "reference-imported.duckdb")
            step(f"reference {stage}: {reference_s[stage]:.1f} s, {flow_s[stage]:.1f} s with the store open")
        results["reference_s"], results["flow_s"] = reference_s, flow_s
        reference = snapshot(ref)
        results["reference_export"] = export_digest(ref_export)

        # 2. Kill points on the second store and its forks
        store = work / "second.duckdb"
        store_export = work / "second-export"
        run_store = work / "run.duckdb"
        forks: dict[str, tuple[Path, list[str]]] = {}
        imported_copy = None
        for index, point in enumerate(KILL_POINTS, 1):
            stage = point["stage"]
            if stage == "run":
                continue  # after the comparison: a store of its own, and the longest
            base = stage if stage != "annotate_workers" else "annotate"
            if stage.startswith("annotate") and imported_copy is None:
                imported_copy = fork(store, work / "second-imported.duckdb")
            if point["fork"]:
                db = work / f"fork-{index}-{stage}.duckdb"
                if base == "annotate":
                    fork(imported_copy, db)
                forks[db.name] = (db, IMPORT_TABLES if base == "import" else LABEL_TABLES)
            else:
                db = store
            export_dir = store_export if stage == "export" else None
            args = command_for(stage, db, work, source, export_dir or Path())
            record = kill_point(cli, point, args, flow_s[stage], db, export_dir, work / f"kill-{index}.log")
            record["index"], record["store"] = index, db.name
            results["kills"].append(record)
            step(
                f"kill {index} {stage} on {db.name}: {record['when']}; alive after {ORPHAN_WAIT_S:.0f} s: "
                f"{len(record['orphans'])}; rerun {record['rerun_code']} in {record['rerun_s']:.1f} s"
            )

        # 3. Concurrent writers
        conc = fork(imported_copy, work / "concurrent-annotates.duckdb")
        results["concurrent"] = concurrent_annotates(cli, conc, work)
        forks[conc.name] = (conc, LABEL_TABLES)
        step(f"two annotates at once: {results['concurrent']['totals']}")
        during = work / "import-during-annotate.duckdb"
        results["during"] = import_during_annotate(cli, during, work, first_half, second_half)
        forks[during.name] = (during, LABEL_TABLES)
        step(f"import during annotate: codes {results['during']['codes']}")

        # 4. Comparison
        second = snapshot(store)
        results["tables"] = [
            {
                "table": name,
                "reference": reference[name]["rows"],
                "adversarial": second[name]["rows"],
                "equal": reference[name]["hash"] == second[name]["hash"],
                "dupes": second[name]["dupes"],
                "ref_dupes": reference[name]["dupes"],
            }
            for name in reference
        ]
        results["export_equal"] = results["reference_export"] == export_digest(store_export)
        results["forks"] = []
        for name, (db, tables) in forks.items():
            got = snapshot(db, tables)
            differs = [t for t in tables if got[t]["hash"] != reference[t]["hash"]]
            results["forks"].append(
                {
                    "store": name,
                    "tables": len(tables),
                    "differ": differs,
                    "rows": {t: (reference[t]["rows"], got[t]["rows"]) for t in differs},
                    "dupes": {t: got[t]["dupes"] for t in tables if got[t]["dupes"]},
                }
            )
        step("compared")

        # 2b. rmforge run, killed during generation (packaged model)
        for index, point in enumerate(KILL_POINTS, 1):
            if point["stage"] != "run":
                continue
            args = command_for("run", run_store, work, source, Path())
            record = kill_point(cli, point, args, None, run_store, None, work / f"kill-{index}.log")
            record["index"], record["store"] = index, run_store.name
            record["dupes"] = {t: s["dupes"] for t, s in snapshot(run_store).items() if s["dupes"]}
            results["kills"].append(record)
            step(
                f"kill {index} run: {record['when']}; alive after {ORPHAN_WAIT_S:.0f} s: {len(record['orphans'])}; "
                f"rerun {record['rerun_code']} in {record['rerun_s']:.1f} s"
            )

        # 5. Cross-origin
        results["cross_origin"] = cross_origin(cli, port, store, work)
        step("cross-origin probes done")
    except Exception as exc:  # noqa: BLE001  # report what ran so far, plainly
        results["errors"].append(f"{type(exc).__name__}: {exc}")
        print(f"error: {exc}", file=sys.stderr)
    finally:
        code, _, err, _ = cli.run(["server", "stop"], timeout=60)
        if code != 0:
            results["errors"].append(f"rmforge server stop: exit {code}: {err}")
        cli.end_leftovers()
        results["wall_s"] = time.monotonic() - wall0
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(render(results, options))
        options.report.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {options.report} ({results['wall_s']:.0f} s)")
        if options.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- report


def render(results: dict, options: argparse.Namespace) -> str:
    kills = results["kills"]
    orphans = sum(len(k["orphans"]) for k in kills)
    tables = results.get("tables", [])
    unequal = [t["table"] for t in tables if not t["equal"]]
    dupes = [t["table"] for t in tables if t["dupes"]]
    probes = results.get("cross_origin", {}).get("probes", [])
    expected_refused = [p for p in probes if p["expect"] == "refused"]
    refused = [p for p in expected_refused if p["refused"]]
    bad_controls = [p for p in probes if p["expect"] == "answered" and p["refused"]]
    failed_reruns = [k for k in kills if k["rerun_code"] != 0]
    fork_problems = [f for f in results.get("forks", []) if f["differ"] or f["dupes"]]
    lines = [
        "# Adversarial run: SIGKILL at every stage, concurrent writers, cross-origin requests",
        "",
        f"`bench/adversarial.py`: {results['n']:,} synthetic rollouts (`bench/soak.py` rows), annotators "
        f"`{ANNOTATORS}`, every command a real `rmforge` process against one `rmforge server start` "
        f"(`RMFORGE_HEARTBEAT_S={HEARTBEAT_S}`). Machine: {platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other jobs), CPU flags: {', '.join(cpu_flags()) or 'unknown'}; Python "
        f"{platform.python_version()}. Wall time: **{results['wall_s']:.0f} s**.",
        "",
        "## Summary",
        "",
        f"- kills: **{len(kills)}**, processes left alive {ORPHAN_WAIT_S:.0f} s after a kill: **{orphans}**"
        + (f" (FAILED: {', '.join(o for k in kills for o in k['orphans'])})" if orphans else ""),
        f"- kills that landed after the command had already exited: {sum(k['exited_before_kill'] for k in kills)}",
        f"- reruns that failed: {len(failed_reruns)}"
        + (
            " (FAILED: "
            + "; ".join(f"#{k['index']} exit {k['rerun_code']}: {k['rerun_err'][-300:]}" for k in failed_reruns)
            + ")"
            if failed_reruns
            else ""
        ),
        f"- second store vs reference: {len(tables) - len(unequal)}/{len(tables)} tables equal"
        + (f" (DIFFER: {', '.join(unequal)})" if unequal else "")
        + f"; tables with duplicate keys: {len(dupes)}"
        + (f" ({', '.join(dupes)})" if dupes else "")
        + (
            f"; exported JSONL identical to the reference's: {'yes' if results.get('export_equal') else 'NO'}"
            if "export_equal" in results
            else ""
        ),
        f"- forks vs reference: {len(results.get('forks', [])) - len(fork_problems)}/{len(results.get('forks', []))} "
        "equal on the tables their commands write, no duplicate keys"
        + (f" (FAILED: {fork_problems})" if fork_problems else ""),
        f"- cross-origin: {len(refused)}/{len(expected_refused)} foreign-Origin/Host requests refused"
        + (f"; controls refused (unexpected): {len(bad_controls)}" if bad_controls else ""),
    ]
    if results["errors"]:
        lines += [f"- **the run stopped early: {'; '.join(results['errors'])}**"]
    lines += [
        "",
        "## Reference (clean run)",
        "",
        "`annotate_workers` (`--workers 2 --batch-size 100`) ran on a copy of the imported reference store, "
        "only to time its kill point.",
        "",
        "| command | seconds | seconds with the store open (flow) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {stage} | {s:.1f} | {results['flow_s'][stage]:.1f} |" for stage, s in results.get("reference_s", {}).items()
    ]
    lines += [
        "",
        "## Kill points",
        "",
        "Each command was SIGKILLed alone (not its process group). *descendants* were recorded with psutil "
        "just before the kill (the watchdog included); *alive at kill* is how many of them ran when the "
        f"kill was sent, *alive after {ORPHAN_WAIT_S:.0f} s* must be 0. *progress* is read from the store after "
        "the kill, before the rerun. *store*: `second` is the compared store; `fork-*` are copies of it "
        "taken before the command, compared on what their commands write.",
        "",
        "| # | command | store | when killed | progress at kill | descendants | alive at kill | "
        f"alive after {ORPHAN_WAIT_S:.0f} s | rerun exit | rerun s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in kills:
        when = k["when"] + (" (**already exited**)" if k["exited_before_kill"] else "")
        lines.append(
            f"| {k['index']} | `rmforge {k['command'].split(' --db')[0]}` | {k['store']} | {when} | "
            f"{k['progress_at_kill']} | {k['descendants']} | {k['alive_at_kill']} | {len(k['orphans'])} | "
            f"{k['rerun_code']} | {k['rerun_s']:.1f} |"
        )
    for k in kills:
        if k["orphans"]:
            lines += ["", f"Left alive after kill {k['index']}:", ""] + [f"- `{o}`" for o in k["orphans"]]
    conc, during = results.get("concurrent"), results.get("during")
    lines += ["", "## Concurrent writers", ""]
    if conc:
        lines += [
            f"- two `annotate --annotator {ANNOTATORS}` at once on a store of {results['n']:,} imported rollouts "
            f"(exit codes {conc['codes']}, {conc['seconds']:.1f} s): rollouts labelled per annotator "
            f"{conc['counts'][0]} + {conc['counts'][1]} = {conc['totals']} (expected {results['n']:,} each)"
        ]
    if during:
        lines += [
            f"- import of the second half ({results['n'] - results['n'] // 2 + (results['n'] // 2) % 4:,} rows)"
            f" started 1 s into an `annotate` of the first half (exit codes: first import, annotate, "
            f"concurrent import, final annotate = {during['codes']}, {during['seconds']:.1f} s together): "
            f"the annotate labelled {during['annotate_during']}, the final annotate {during['annotate_after']}"
        ]
    for f in results.get("forks", []):
        if f["store"] in ("concurrent-annotates.duckdb", "import-during-annotate.duckdb"):
            lines.append(
                f"- `{f['store']}`: {f['tables'] - len(f['differ'])}/{f['tables']} tables equal to the "
                f"reference, duplicate keys: {sum(f['dupes'].values()) if f['dupes'] else 0}"
                + (f" (DIFFER: {f['rows']})" if f["differ"] else "")
            )
    lines += [
        "",
        "## Second store vs reference",
        "",
        "| table | reference rows | adversarial rows | equal | duplicate keys |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['table']} | {t['reference']} | {t['adversarial']} | {'yes' if t['equal'] else '**NO**'} | {t['dupes']} |"
        for t in tables
    ]
    lines += ["", "Forks (copies of the second store, killed and rerun there):", ""]
    lines += [
        f"- `{f['store']}`: {f['tables'] - len(f['differ'])}/{f['tables']} tables equal"
        + (f", DIFFER: {f['rows']}" if f["differ"] else "")
        + (f", duplicate keys {f['dupes']}" if f["dupes"] else "")
        for f in results.get("forks", [])
    ]
    co = results.get("cross_origin")
    if co:
        lines += ["", "## Cross-origin", "", "| server | request | status | refused |", "|---|---|---|---|"]
        lines += [
            f"| {p['server']} | {p['what']} | {p['status']} | {'yes' if p['refused'] else 'no'}"
            + ("" if (p["expect"] == "refused") == p["refused"] else " (**unexpected**)")
            + " |"
            for p in probes
        ]
        lines += [
            "",
            f"Variables planted through the refused requests: {co['planted_variables'] or 'none'}; "
            f"human labels saved by the refused review requests: {co['human_labels']}.",
        ]
    lines += [
        "",
        "## Reproduce",
        "",
        "```",
        f"cd {ROOT} && PYTHONPATH={ROOT} {sys.executable} bench/adversarial.py --rollouts {results['n']}",
        "```",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
