"""Export curated datasets in training formats, each with a dataset card.

Formats (columns as the trainers expect them):
- `process`: TRL stepwise supervision (`prompt`, `completions`, `labels`) plus
  `soft_labels` (MC values) for regression-style PRM training.
- `preference`: TRL preference / OpenRLHF reward-model keys (`prompt`, `chosen`,
  `rejected`).
- `kto`: TRL unpaired preference (`prompt`, `completion`, `label`) from verified
  outcomes of kept rollouts.
- `critiques`: judge critiques (`prompt`, `response`, `critique`, `first_error_step`).
Each is written as Parquet, JSONL and a Hugging Face `datasets` folder
(save_to_disk); the card (README.md) lists one `load_dataset` config per
non-empty dataset.

The export owns its folder. It writes only `README.md`, `rmforge-export.json`
(the manifest: what this export wrote, with sizes and sha256), `<name>.parquet`,
`<name>.jsonl` and `hf/<name>/`. A folder holding anything else, or a non-empty
folder no rmforge export made, is refused. After an export the folder holds this
export's files and nothing else: datasets not exported this time are removed.
Every file is written under a temporary folder inside the output folder, then
renamed into place, so a killed export leaves each file either old or new,
never cut; the manifest says `"status": "writing"` until the last rename.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.annotators import REGISTRY, annotator_class
from rmforge.annotators.base import AUTHORITY_RANK
from rmforge.schemas.config import CurationConfig
from rmforge.schemas.records import utc_now
from rmforge.tasks.store import Store, StoreLocation, resolve_store

MANIFEST = "rmforge-export.json"
CARD = "README.md"
STAGING_PREFIX = ".rmforge-tmp-"
# Exports made before the manifest existed start their card with this line.
_LEGACY_CARD_TITLE = "# rmforge export"


class ExportError(RuntimeError):
    """An export that cannot be made, naming the folder or store at fault when there is one."""

    user_facing = True  # the CLI prints the message as one line

    def __init__(self, reason: str, where: Path | StoreLocation | None = None) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where is not None else reason)


@dataclass(frozen=True)
class ExportSpec:
    format: str
    schema: pa.Schema
    sql: str  # `{outcome}` is replaced by `outcome_verdict_sql`


def _strings(*names: str) -> list[pa.Field]:
    return [pa.field(name, pa.string()) for name in names]


EXPORTS: dict[str, ExportSpec] = {
    "process": ExportSpec(
        "TRL stepwise supervision",
        pa.schema(
            _strings("prompt")
            + [
                pa.field("completions", pa.list_(pa.string())),
                pa.field("labels", pa.list_(pa.bool_())),
                pa.field("soft_labels", pa.list_(pa.float64())),
            ]
            + _strings("rollout_id", "problem_id")
            + [pa.field("annotators", pa.list_(pa.string())),
               pa.field("label_supporters", pa.list_(pa.list_(pa.string()))),
               pa.field("outcome_implied", pa.list_(pa.bool_()))]
        ),
        """
        SELECT prompt, completions, labels, soft_labels, rollout_id, problem_id, annotators, label_supporters,
               outcome_implied
        FROM process_examples ORDER BY example_id""",
    ),
    "preference": ExportSpec(
        "TRL preference / OpenRLHF reward model",
        pa.schema(_strings("prompt", "chosen", "rejected", "chosen_rollout_id", "rejected_rollout_id", "problem_id")),
        """
        SELECT prompt, chosen, rejected, chosen_rollout_id, rejected_rollout_id, problem_id
        FROM preference_pairs ORDER BY pair_id""",
    ),
    "kto": ExportSpec(
        "TRL unpaired preference (KTO)",
        pa.schema(
            _strings("prompt", "completion") + [pa.field("label", pa.bool_())] + _strings("rollout_id", "problem_id")
        ),
        """
        WITH outcome AS ({outcome})
        SELECT p.question AS prompt, r.response AS completion, o.verdict = 'correct' AS label,
               r.rollout_id, r.problem_id
        FROM rollouts r JOIN problems p USING (problem_id) JOIN outcome o USING (rollout_id)
        LEFT JOIN rollout_curation c USING (rollout_id)
        WHERE coalesce(c.status, 'kept') = 'kept'
        ORDER BY r.rollout_id""",
    ),
    "critiques": ExportSpec(
        "critique SFT",
        pa.schema(
            _strings("prompt", "response", "critique")
            + [pa.field("first_error_step", pa.int64())]
            + _strings("verdict", "model", "rollout_id")
        ),
        """
        SELECT p.question AS prompt, r.response, c.text AS critique, c.first_error_step,
               c.verdict, c.model, c.rollout_id
        FROM critiques c JOIN rollouts r USING (rollout_id) JOIN problems p USING (problem_id)
        LEFT JOIN rollout_curation k USING (rollout_id)
        WHERE coalesce(k.status, 'kept') = 'kept'  -- no critiques of contaminated or duplicate rollouts
        ORDER BY c.critique_id""",
    ),
}


# ---------------------------------------------------------------- what is exported

def outcome_annotators(store: Store) -> dict[str, int]:
    """{annotator: authority rank} of the stored annotators that declare outcome labels."""
    names = [row[0] for row in store.execute("SELECT DISTINCT annotator FROM outcome_labels ORDER BY 1")]
    ranks = {}
    for name in names:
        if name in REGISTRY and (evidence := annotator_class(name).evidence).labels_outcomes:
            ranks[name] = AUTHORITY_RANK[evidence.authority]
    return ranks


def outcome_verdict_sql(store: Store) -> tuple[str, list[Any]]:
    """(sql, params) selecting each rollout's decided outcome verdict: (rollout_id, verdict),
    from the outcome consensus that curation built (tasks/consensus.py)."""
    return "SELECT rollout_id, verdict FROM outcome_consensus WHERE verdict IN ('correct', 'incorrect')", []


def fetch_dataset(store: Store, name: str) -> pa.Table:
    """The dataset as a table of exactly its export schema (typed even when empty)."""
    spec = EXPORTS[name]
    params: list[Any] = []
    sql = spec.sql
    if "{outcome}" in sql:
        outcome_sql, params = outcome_verdict_sql(store)
        sql = sql.replace("{outcome}", outcome_sql)
    return store.sql(sql, params).cast(spec.schema)


def dataset_stats(name: str, table: pa.Table) -> dict[str, object]:
    """Counts and balance of one dataset, as exported."""
    stats: dict[str, object] = {"rows": table.num_rows}
    columns = table.column_names
    if "problem_id" in columns:
        stats["problems"] = len(pc.unique(table.column("problem_id")))
    if not table.num_rows:
        return stats
    if name == "process":
        labels = pc.list_flatten(table.column("labels"))
        steps = len(labels)
        stats["steps"] = steps
        stats["positive_step_fraction"] = round(pc.sum(labels).as_py() / steps, 4)
        stats["mean_steps_per_example"] = round(steps / table.num_rows, 2)
        last = [row[-1] for row in table.column("labels").to_pylist()]
        stats["examples_ending_in_error"] = last.count(False)
        # Only a probability estimate lies strictly between the hard labels 0.0 and 1.0.
        soft = pc.list_flatten(table.column("soft_labels"))
        stats["fractional_soft_labels"] = pc.sum(pc.and_(pc.greater(soft, 0.0), pc.less(soft, 1.0))).as_py() or 0
        stats["outcome_implied_labels"] = pc.sum(pc.list_flatten(table.column("outcome_implied"))).as_py() or 0
    if name == "preference":
        stats["mean_pairs_per_problem"] = round(table.num_rows / stats["problems"], 2)
    if name == "kto":
        stats["desirable_fraction"] = round(pc.sum(table.column("label")).as_py() / table.num_rows, 4)
    if name == "critiques":
        verdicts = pc.value_counts(table.column("verdict")).to_pylist()
        stats["verdicts"] = {v["values"]: v["counts"] for v in sorted(verdicts, key=lambda v: str(v["values"]))}
    return stats


# ---------------------------------------------------------------- the dataset card

def curation_settings(store: Store) -> dict[str, Any] | None:
    """The latest curate run's config: {"annotators": [...], "curation": {...}}."""
    rows = store.execute(
        "SELECT config FROM runs WHERE flow = 'curate' ORDER BY started_at DESC LIMIT 1"
    )
    return json.loads(rows[0][0]) if rows else None


def export_provenance(store: Store) -> dict[str, Any]:
    """What the card says about where the labels came from."""
    step_annotators = [
        row[0] for row in store.execute("SELECT DISTINCT UNNEST(annotators) FROM process_examples ORDER BY 1")
    ]
    critics = store.rows(
        "SELECT annotator, model, count(*) AS critiques FROM critiques GROUP BY ALL ORDER BY annotator, model"
    )
    return {
        "database": store.location.name,
        "curation": curation_settings(store),
        "step_annotators": step_annotators,
        "outcome_annotators": list(outcome_annotators(store)),
        "critics": critics,
    }


def _annotator_row(name: str) -> str:
    if name not in REGISTRY:
        return f"| `{name}` | not a known annotator | | | | |"
    evidence = annotator_class(name).evidence
    yes = {True: "yes", False: "no"}
    return (
        f"| `{name}` | {yes[evidence.confirms_steps]} | {yes[evidence.refutes_steps]} | "
        f"{yes[evidence.labels_outcomes]} | {evidence.authority} | {evidence.score} |"
    )


def _front_matter(stats: dict[str, dict[str, object]]) -> list[str]:
    """YAML `configs:` so `datasets.load_dataset(folder, name)` reads each Parquet file.

    Empty datasets are left out: `datasets` cannot load a split with no rows.
    """
    loadable = [name for name, values in stats.items() if values["rows"]]
    if not loadable:
        return []
    default = "process" if "process" in loadable else loadable[0]
    lines = ["---", "configs:"]
    for name in loadable:
        lines.append(f"- config_name: {name}")
        if name == default:
            lines.append("  default: true")
        lines += ["  data_files:", "  - split: train", f"    path: {name}.parquet"]
    return lines + ["---", ""]


_LABEL_MEANING = {
    "process": (
        "`labels[i]` is true when the consensus found step *i* correct, which takes an annotator "
        "whose `correct` verdict is evidence (confirms steps: yes, below); false when it found the "
        "step wrong, which takes one whose `incorrect` verdict is evidence (refutes steps: yes). "
        "The consensus rule below settles disagreements. "
        "Each example holds a rollout's steps in order while they are agreed and ends at its first "
        "false step; a step without agreement ends the example before it. `soft_labels[i]` is the "
        "Monte Carlo estimate that a correct answer is reachable from step *i* where a "
        "probability-scoring annotator valued the step, else the hard label as 1.0 / 0.0 "
        "(`fractional_soft_labels` counts the values strictly between 0 and 1). "
        "`outcome_implied[i]` is true when label *i* rests only on the rollout's own correct final "
        "answer (\"it reaches the gold, so every step is right\", Math-Shepherd's good prefix), not on "
        "evidence about the step: solutions can reach the right answer through a wrong step "
        "(`outcome_implied_labels` counts them; curation with `direct_step_evidence` drops them)."
    ),
    "preference": (
        "`chosen` is a response whose final answer was verified correct, `rejected` one verified "
        "incorrect, for the same prompt; unknown outcomes and duplicates are never used."
    ),
    "kto": (
        "`label` is true when the rollout's final answer was verified correct, false when verified "
        "incorrect: of the annotators that label outcomes, the highest authority with a verdict "
        "decides (`unknown` abstains; disagreement at that authority leaves the rollout out). Only "
        "rollouts kept by deduplication."
    ),
    "critiques": (
        "`critique` is a judge's review of `response`; `first_error_step` is the index of the first "
        "step it found wrong (-1: none, empty: undecided); `verdict` is its verdict on the outcome."
    ),
}


def dataset_card(stats: dict[str, dict[str, object]], provenance: dict[str, Any], run_id: str | None) -> str:
    """The README.md of an export: load instructions, label meaning, settings, counts."""
    lines = _front_matter(stats) + [
        "# rmforge export",
        "",
        f"Exported by rmforge from the database `{provenance['database']}`"
        + (f" (export run `{run_id}`)" if run_id else "")
        + f" at {utc_now():%Y-%m-%d %H:%M} UTC.",
        "Columns follow TRL's dataset formats; the preference set also uses OpenRLHF's default keys",
        "(`--chosen_key chosen --rejected_key rejected`).",
        "",
        "| dataset | format | rows | files |",
        "|---|---|---|---|",
    ]
    for name, values in stats.items():
        files = f"`{name}.parquet`, `{name}.jsonl`, `hf/{name}/`"
        lines.append(f"| {name} | {EXPORTS[name].format} | {values['rows']} | {files} |")
    lines += [
        "",
        "```python",
        "import datasets",
        'datasets.load_dataset("path/to/this/folder", "process")  # any non-empty dataset above',
        'datasets.load_from_disk("path/to/this/folder/hf/process")',
        "```",
        "",
    ]
    empty = [name for name, values in stats.items() if not values["rows"]]
    if empty:
        lines += [
            (
                f"Empty: {', '.join(empty)}. Their Parquet files (typed, no rows), JSONL files (empty) and "
                "`hf/` folders load; they have no `load_dataset` config because `datasets` cannot load a "
                "split with no rows."
            ),
            "",
        ]

    lines += ["## What a label means", ""]
    lines += [f"- **{name}**: {_LABEL_MEANING[name]}" for name in stats] + [""]

    lines += ["## Annotators and consensus", ""]
    curation = provenance["curation"]
    if curation is None:
        lines += ["No curate run is recorded in the database.", ""]
    else:
        # As recorded, over today's defaults: a run recorded under older settings still reads.
        settings = {**CurationConfig().model_dump(), **curation.get("curation", {})}
        consensus_help = CurationConfig.model_fields["consensus"].description
        required = ", ".join(f"`{a}`" for a in settings["required_annotators"]) or "none"
        near = f"on (cosine >= {settings['near_duplicate_threshold']})" if settings["near_dedupe"] else "off"
        lines += [
            "Voting annotators of the latest curation: "
            + ", ".join(f"`{a}`" for a in curation.get("annotators", [])) + ".",
            f"Consensus rule: `{settings['consensus']}` ({consensus_help}); required annotators: {required}.",
            (
                "Labels resting only on a rollout's own correct outcome "
                + ("abstained (`direct_step_evidence`)." if settings["direct_step_evidence"]
                   else "voted (`direct_step_evidence` off); `outcome_implied` marks them.")
            ),
            (
                f"Deduplication: exact {'on' if settings['exact_dedupe'] else 'off'}, near-duplicate {near}; "
                f"at most {settings['max_pairs_per_problem']} preference pairs per problem."
            ),
            "",
        ]
    used = sorted(set(provenance["step_annotators"]) | set(provenance["outcome_annotators"]))
    lines += [
        "Annotators behind the exported labels (what their verdicts are evidence of):",
        "",
        "| annotator | confirms steps | refutes steps | labels outcomes | authority | score |",
        "|---|---|---|---|---|---|",
    ] + [_annotator_row(name) for name in used] + [""]
    lines.append(
        "Step labels in `process` come from: "
        + (", ".join(f"`{a}`" for a in provenance["step_annotators"]) or "none")
        + ". Outcome verdicts for `kto` come from: "
        + (", ".join(f"`{a}`" for a in provenance["outcome_annotators"]) or "none")
        + "."
    )
    if provenance["critics"] and "critiques" in stats:
        critics = ", ".join(f"`{c['annotator']}` ({c['model'] or 'no model'}: {c['critiques']})"
                            for c in provenance["critics"])
        lines.append(f"Critiques by: {critics}.")
    lines += ["", "## Counts and balance", ""]
    lines += [f"- **{name}**: {json.dumps(values)}" for name, values in stats.items()]
    lines += [
        "",
        "## Columns",
        "",
    ] + [
        f"- **{name}**: " + ", ".join(f"`{f.name}` ({f.type})" for f in EXPORTS[name].schema)
        for name in stats
    ] + [
        "",
        f"`{MANIFEST}` lists every file of this export with its size and sha256; this folder holds",
        "nothing else (the next export into it replaces it whole).",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the output folder

def _owned_names() -> set[str]:
    return {CARD, MANIFEST, "hf"} | {f"{n}.{ext}" for n in EXPORTS for ext in ("parquet", "jsonl")}


def _made_by_rmforge(out: Path) -> bool:
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text(encoding="utf-8")).get("format") == "rmforge-export"
        except (ValueError, AttributeError):
            return False
    card = out / CARD
    return card.is_file() and card.read_text(encoding="utf-8", errors="replace").startswith(_LEGACY_CARD_TITLE)


def check_export(db: str | os.PathLike | None, out_dir: str | os.PathLike, names: list[str] | None) -> list[str]:
    """Refuse a bad export before any work; returns the dataset names to export."""
    names = list(dict.fromkeys(names or EXPORTS))
    unknown = [n for n in names if n not in EXPORTS]
    if unknown:
        raise ExportError(f"unknown dataset {unknown[0]!r}; known: {', '.join(EXPORTS)}")
    location = resolve_store(db)
    if not location.exists():
        raise ExportError("no rmforge database here (run `rmforge run` or `rmforge import` first)", location)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError("is a file; --out must be a folder", out)
    if not out.is_dir():
        return names
    entries = [e for e in out.iterdir() if not e.name.startswith(STAGING_PREFIX)]
    if not entries:
        return names
    if not _made_by_rmforge(out):
        raise ExportError(f"is not empty and holds no rmforge export (no {MANIFEST}); use a new or empty folder", out)
    foreign = sorted(e.name for e in entries if e.name not in _owned_names())
    hf = out / "hf"
    if hf.is_dir():
        foreign += sorted(f"hf/{e.name}" for e in hf.iterdir() if e.name not in EXPORTS)
    elif hf.exists():
        foreign.append("hf")
    if foreign:
        raise ExportError("was not written by rmforge export; move it away or use another folder", out / foreign[0])
    return names


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One export at a time per folder (a lock on the folder itself, no lock file)."""
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError("another export is writing to this folder", out) from None
        yield
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _replace_folder(new: Path, target: Path, trash: Path) -> None:
    """Put folder `new` at `target`, which is at every moment the old folder or the new one."""
    if not target.exists():
        os.rename(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new)  # now the old folder
    else:  # a kill between these two renames leaves the old folder at `trash`
        os.rename(target, trash)
        os.rename(new, target)
        shutil.rmtree(trash)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Make the staged files durable before they are renamed into place."""
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        _fsync(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_dataset(folder: Path, name: str, table: pa.Table) -> None:
    """<name>.parquet, <name>.jsonl and hf/<name>/ in `folder`."""
    import datasets
    import polars as pl
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    pq.write_table(table, folder / f"{name}.parquet")
    pl.from_arrow(table).write_ndjson(folder / f"{name}.jsonl")
    quiet_already = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        # An empty dataset saved in 0 shards cannot be loaded back: keep one shard.
        datasets.Dataset(table).save_to_disk(str(folder / "hf" / name), num_shards=1 if not table.num_rows else None)
    finally:
        if not quiet_already:
            enable_progress_bars()


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def publish(staging: Path, out: Path, names: list[str], manifest: dict[str, Any]) -> None:
    """Rename the staged export into `out`, remove what it does not include, manifest last."""
    files = {
        str(path.relative_to(staging)): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(staging.rglob("*")) if path.is_file()
    }
    manifest = {**manifest, "files": files}
    _write_json(staging / f"{MANIFEST}.writing", {**manifest, "status": "writing"})
    _write_json(staging / MANIFEST, {**manifest, "status": "complete"})
    _fsync_tree(staging)
    os.replace(staging / f"{MANIFEST}.writing", out / MANIFEST)
    (out / "hf").mkdir(exist_ok=True)
    for name in EXPORTS:
        for ext in ("parquet", "jsonl"):
            if name in names:
                os.replace(staging / f"{name}.{ext}", out / f"{name}.{ext}")
            else:
                (out / f"{name}.{ext}").unlink(missing_ok=True)
        trash = staging / f"old-{name}"
        if name in names:
            _replace_folder(staging / "hf" / name, out / "hf" / name, trash)
        elif (out / "hf" / name).exists():
            os.rename(out / "hf" / name, trash)
            shutil.rmtree(trash)
    os.replace(staging / CARD, out / CARD)
    os.replace(staging / MANIFEST, out / MANIFEST)
    for folder in (out / "hf", out):  # the renames themselves
        _fsync(folder)


@task(name="export-datasets", cache_policy=NO_CACHE)
def export_datasets(
    db: str, out_dir: str, names: list[str] | None = None, run_id: str | None = None
) -> dict[str, dict[str, object]]:
    """Write the datasets, their card and manifest into `out_dir`; returns stats per dataset."""
    names = check_export(db, out_dir, names)
    out = Path(out_dir)
    stats: dict[str, dict[str, object]] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        with _exclusive(out), Store(db, read_only=True) as store:
            for leftover in out.glob(f"{STAGING_PREFIX}*"):  # from an export that was killed
                shutil.rmtree(leftover, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
            try:
                for name in names:
                    table = fetch_dataset(store, name)
                    stats[name] = dataset_stats(name, table)
                    write_dataset(staging, name, table)
                provenance = export_provenance(store)
                (staging / CARD).write_text(dataset_card(stats, provenance, run_id), encoding="utf-8")
                manifest = {
                    "format": "rmforge-export",
                    "version": 1,
                    "run_id": run_id,
                    "database": provenance["database"],
                    "exported_at": utc_now().isoformat(),
                    "datasets": stats,
                }
                publish(staging, out, names, manifest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise ExportError(f"cannot write the export: {exc.strerror or exc}", out) from exc
    return stats
