"""Export curated datasets in training formats, each with a dataset card.

Formats (columns as the trainers expect them):
- `process`: TRL stepwise supervision (`prompt`, `completions`, `labels`) plus
  `soft_labels` (MC values) for regression-style PRM training.
- `preference`: TRL preference / OpenRLHF reward-model keys (`prompt`, `chosen`,
  `rejected`).
- `kto`: TRL unpaired preference (`prompt`, `completion`, `label`) from verified
  outcomes of kept rollouts.
- `critiques`: judge critiques (`prompt`, `response`, `critique`, `first_error_step`).
In the standard format prompts and completions are text (each prompt ends with a blank
line); in the conversational format they are TRL's chat messages (`process` stays text:
PRMTrainer reads text only). Each is written as Parquet, JSONL and a Hugging Face
`datasets` folder (save_to_disk); the card (README.md, a Hub dataset card) lists one
`load_dataset` config per non-empty dataset, and `rmforge_config.yaml` holds the settings
of the export and of the runs behind the data.

The export owns its folder. It writes only `README.md`, `rmforge-export.json`
(the manifest: what this export wrote, with sizes and sha256), `rmforge_config.yaml`,
`<name>.parquet`, `<name>.jsonl` and `hf/<name>/`. A folder holding anything else, or a non-empty
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
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCard, DatasetCardData
from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.annotators import REGISTRY, annotator_class
from rmforge.annotators.base import AUTHORITY_RANK
from rmforge.annotators.judge import build_judge_request
from rmforge.generators.prompts import SYSTEM_PROMPTS
from rmforge.schemas.config import CurationConfig, ExportConfig, ExportFormat, GeneratorConfig
from rmforge.schemas.records import utc_now
from rmforge.tasks.store import Store, StoreLocation, resolve_store

MANIFEST = "rmforge-export.json"
CARD = "README.md"
CONFIG_FILE = "rmforge_config.yaml"
PROMPT_END = "\n\n"  # ends every standard-format prompt
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


Message = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(Message)

# Rollouts sampled by rmforge's own generators, whose prompt is `solution_request` (generators/prompts.py);
# imported rollouts ("import") come with their question only.
GENERATED_BY = frozenset(get_args(GeneratorConfig.model_fields["backend"].annotation))


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _prompt_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The chat the row's rollouts answered: the generator's system prompt when every one of them was
    sampled by rmforge, then the question. The worked example the generator also sends is a
    formatting aid, not part of the task, and is left out."""
    generated = all(generator in GENERATED_BY for generator in row["prompt_generators"])
    system = [_message("system", SYSTEM_PROMPTS[row["domain"]])] if generated and row["domain"] else []
    return system + [_message("user", row["prompt"])]


def _text_row(row: dict[str, Any]) -> dict[str, Any]:
    # TRL joins a standard prompt and its completion as they are ("...April and May?Step 1: ..."):
    # the blank line keeps them apart.
    return {**row, "prompt": row["prompt"] + PROMPT_END}


def _text_process_row(row: dict[str, Any]) -> dict[str, Any]:
    # Without whitespace around a step, a run of newlines longer than any inside a step is an
    # unambiguous separator (`step_separator`); the step splitter strips them already, imports may not.
    return {**_text_row(row), "completions": [step.strip() for step in row["completions"]]}


def _chat_preference_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "prompt": _prompt_messages(row), "chosen": [_message("assistant", row["chosen"])],
            "rejected": [_message("assistant", row["rejected"])]}


def _chat_kto_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "prompt": _prompt_messages(row), "completion": [_message("assistant", row["completion"])]}


def _chat_critique_row(row: dict[str, Any]) -> dict[str, Any]:
    """Critique SFT: the request the judge answered (its template, over the rollout's stored steps),
    and the critique as the assistant's reply."""
    request = build_judge_request(row["prompt"], row["steps"] or [])
    return {**row, "prompt": [m.model_dump() for m in request.messages],
            "completion": [_message("assistant", row["critique"])]}


@dataclass(frozen=True)
class ExportSpec:
    format: str
    schema: pa.Schema  # the standard format's columns
    sql: str  # `{outcome}` is replaced by OUTCOME_VERDICT_SQL; extra columns feed the row functions
    text_row: Callable[[dict[str, Any]], dict[str, Any]] = _text_row
    # The conversational format's columns and rows; None where TRL reads text only (PRMTrainer).
    chat_schema: pa.Schema | None = None
    chat_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def _strings(*names: str) -> list[pa.Field]:
    return [pa.field(name, pa.string()) for name in names]


def _messages(*names: str) -> list[pa.Field]:
    return [pa.field(name, MESSAGES) for name in names]


_PROCESS_IDS = _strings("rollout_id", "problem_id")
_PREFERENCE_IDS = _strings("chosen_rollout_id", "rejected_rollout_id", "problem_id")
_KTO_REST = [pa.field("label", pa.bool_())] + _strings("rollout_id", "problem_id")
_CRITIQUE_REST = [pa.field("first_error_step", pa.int64())] + _strings("verdict", "model", "rollout_id")

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
            + _PROCESS_IDS
            + [pa.field("annotators", pa.list_(pa.string())),
               pa.field("label_supporters", pa.list_(pa.list_(pa.string()))),
               pa.field("outcome_implied", pa.list_(pa.bool_()))]
        ),
        """
        SELECT prompt, completions, labels, soft_labels, rollout_id, problem_id, annotators, label_supporters,
               outcome_implied
        FROM process_examples ORDER BY example_id""",
        text_row=_text_process_row,
    ),
    "preference": ExportSpec(
        "TRL preference / OpenRLHF reward model",
        pa.schema(_strings("prompt", "chosen", "rejected") + _PREFERENCE_IDS),
        """
        SELECT pp.prompt, pp.chosen, pp.rejected, pp.chosen_rollout_id, pp.rejected_rollout_id, pp.problem_id,
               p.domain, [c.generator, r.generator] AS prompt_generators
        FROM preference_pairs pp LEFT JOIN problems p USING (problem_id)
        LEFT JOIN rollouts c ON c.rollout_id = pp.chosen_rollout_id
        LEFT JOIN rollouts r ON r.rollout_id = pp.rejected_rollout_id
        ORDER BY pp.pair_id""",
        chat_schema=pa.schema(_messages("prompt", "chosen", "rejected") + _PREFERENCE_IDS),
        chat_row=_chat_preference_row,
    ),
    "kto": ExportSpec(
        "TRL unpaired preference (KTO)",
        pa.schema(_strings("prompt", "completion") + _KTO_REST),
        """
        WITH outcome AS ({outcome})
        SELECT p.question AS prompt, r.response AS completion, o.verdict = 'correct' AS label,
               r.rollout_id, r.problem_id, p.domain, [r.generator] AS prompt_generators
        FROM rollouts r JOIN problems p USING (problem_id) JOIN outcome o USING (rollout_id)
        LEFT JOIN rollout_curation c USING (rollout_id)
        WHERE coalesce(c.status, 'kept') = 'kept'
        ORDER BY r.rollout_id""",
        chat_schema=pa.schema(_messages("prompt", "completion") + _KTO_REST),
        chat_row=_chat_kto_row,
    ),
    "critiques": ExportSpec(
        "critique SFT",
        pa.schema(_strings("prompt", "response", "critique") + _CRITIQUE_REST),
        """
        SELECT p.question AS prompt, r.response, c.text AS critique, c.first_error_step,
               c.verdict, c.model, c.rollout_id,
               (SELECT list(s.text ORDER BY s.step_index) FROM steps s WHERE s.rollout_id = c.rollout_id) AS steps
        FROM critiques c JOIN rollouts r USING (rollout_id) JOIN problems p USING (problem_id)
        LEFT JOIN rollout_curation k USING (rollout_id)
        WHERE coalesce(k.status, 'kept') = 'kept'  -- no critiques of contaminated or duplicate rollouts
        ORDER BY c.critique_id""",
        chat_schema=pa.schema(_messages("prompt", "completion") + _strings("response") + _CRITIQUE_REST),
        chat_row=_chat_critique_row,
    ),
}


def _shape(name: str, style: ExportFormat) -> tuple[pa.Schema, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The columns of dataset `name` in format `style`, and the function making a row of them."""
    spec = EXPORTS[name]
    if style == "conversational" and spec.chat_schema is not None and spec.chat_row is not None:
        return spec.chat_schema, spec.chat_row
    return spec.schema, spec.text_row


def export_schema(name: str, style: ExportFormat) -> pa.Schema:
    """The columns of dataset `name` in format `style`."""
    return _shape(name, style)[0]


# ---------------------------------------------------------------- what is exported

def outcome_annotators(store: Store) -> dict[str, int]:
    """{annotator: authority rank} of the stored annotators that declare outcome labels."""
    names = [row[0] for row in store.execute("SELECT DISTINCT annotator FROM outcome_labels ORDER BY 1")]
    ranks = {}
    for name in names:
        if name in REGISTRY and (evidence := annotator_class(name).evidence).labels_outcomes:
            ranks[name] = AUTHORITY_RANK[evidence.authority]
    return ranks


# Each rollout's decided outcome verdict, (rollout_id, verdict), from the outcome consensus that
# curation built (tasks/consensus.py).
OUTCOME_VERDICT_SQL = "SELECT rollout_id, verdict FROM outcome_consensus WHERE verdict IN ('correct', 'incorrect')"


def fetch_dataset(store: Store, name: str, style: ExportFormat = "standard") -> pa.Table:
    """The dataset in format `style`, as a table of exactly its export schema (typed even when empty)."""
    sql = EXPORTS[name].sql.replace("{outcome}", OUTCOME_VERDICT_SQL)
    schema, shape = _shape(name, style)
    return pa.Table.from_pylist([shape(row) for row in store.rows(sql)], schema=schema)


def step_separator(process: pa.Table) -> str:
    """The separator to join `process` steps with: one newline more than the longest run inside any step.

    TRL's PRMTrainer ends each step with `step_separator` (default "\n") and a PRM scores a new solution
    split on it, so no step may hold it; "\n" itself when no step holds a newline.
    """
    runs = [len(run) for steps in process.column("completions").to_pylist() for step in steps
            for run in re.findall(r"\n+", step)]
    return "\n" * (max(runs, default=0) + 1)


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


_KEPT_ROLLOUTS = """
    SELECT r.* FROM rollouts r LEFT JOIN rollout_curation c USING (rollout_id)
    WHERE coalesce(c.status, 'kept') = 'kept'"""


def _labels_of_kept(table: str) -> str:
    return f"SELECT * FROM {table} WHERE rollout_id IN (SELECT rollout_id FROM kept)"


def export_provenance(store: Store) -> dict[str, Any]:
    """What the card says about where the data came from: every exported row rests on kept rollouts."""
    step_annotators = [
        row[0] for row in store.execute("SELECT DISTINCT UNNEST(annotators) FROM process_examples ORDER BY 1")
    ]
    critics = store.rows(
        "SELECT annotator, model, count(*) AS critiques FROM critiques GROUP BY ALL ORDER BY annotator, model"
    )
    generation = store.rows(f"""
        WITH kept AS ({_KEPT_ROLLOUTS})
        SELECT model, generator, sampling, count(*) AS rollouts, list(DISTINCT run_id ORDER BY run_id) AS runs
        FROM kept GROUP BY ALL ORDER BY rollouts DESC, model, generator, sampling""")
    sources = store.rows(f"""
        WITH kept AS ({_KEPT_ROLLOUTS})
        SELECT p.source, count(DISTINCT p.problem_id) AS problems FROM kept JOIN problems p USING (problem_id)
        GROUP BY ALL ORDER BY problems DESC, source""")
    annotators = store.rows(f"""
        WITH kept AS ({_KEPT_ROLLOUTS}), labels AS (
            SELECT annotator, annotator_version, config_hash, model, run_id, 'step' AS kind
            FROM ({_labels_of_kept("step_labels")})
            UNION ALL
            SELECT annotator, annotator_version, config_hash, model, run_id, 'outcome'
            FROM ({_labels_of_kept("outcome_labels")}))
        SELECT annotator, annotator_version AS version, config_hash,
               list(DISTINCT model ORDER BY model) FILTER (model IS NOT NULL) AS models,
               count(*) FILTER (kind = 'step') AS step_labels, count(*) FILTER (kind = 'outcome') AS outcome_labels,
               list(DISTINCT run_id ORDER BY run_id) AS runs
        FROM labels GROUP BY ALL ORDER BY annotator, version, config_hash""")
    runs = store.rows(f"""
        WITH kept AS ({_KEPT_ROLLOUTS}), ids AS (
            SELECT run_id FROM kept
            UNION SELECT run_id FROM ({_labels_of_kept("step_labels")})
            UNION SELECT run_id FROM ({_labels_of_kept("outcome_labels")})
            UNION SELECT run_id FROM ({_labels_of_kept("critiques")})
            UNION SELECT run_id FROM process_examples
            UNION SELECT run_id FROM preference_pairs
            UNION SELECT run_id FROM (SELECT run_id FROM runs WHERE flow = 'curate' ORDER BY started_at DESC LIMIT 1))
        SELECT ids.run_id, r.flow, r.status, r.started_at, r.config
        FROM ids LEFT JOIN runs r USING (run_id) ORDER BY r.started_at NULLS LAST, ids.run_id""")
    for run in runs:
        run["config"] = json.loads(run["config"]) if run["config"] else None
    deciders = outcome_annotators(store)
    behind_labels = set(step_annotators) | set(deciders) | {row["annotator"] for row in critics}
    return {
        "database": store.location.name,
        "curation": curation_settings(store),
        "step_annotators": step_annotators,
        "outcome_annotators": list(deciders),
        "critics": critics,
        "generation": generation,
        "sources": sources,
        "annotators": [row for row in annotators if row["annotator"] in behind_labels],
        "annotator_options": _annotator_options(runs),
        "runs": runs,
    }


def _annotator_options(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """{annotator: its options in the latest annotate run that ran it} (runs in start order)."""
    options: dict[str, Any] = {}
    for run in runs:
        if run["flow"] == "annotate" and run["config"]:
            given = run["config"].get("options") or {}
            options.update({name: given.get(name, {}) for name in run["config"].get("annotators", [])})
    return options


def _annotator_row(name: str) -> str:
    if name not in REGISTRY:
        return f"| `{name}` | not a known annotator | | | | |"
    evidence = annotator_class(name).evidence
    yes = {True: "yes", False: "no"}
    return (
        f"| `{name}` | {yes[evidence.confirms_steps]} | {yes[evidence.refutes_steps]} | "
        f"{yes[evidence.labels_outcomes]} | {evidence.authority} | {evidence.score} |"
    )


def _configs(stats: dict[str, dict[str, object]]) -> list[dict[str, Any]] | None:
    """One `configs` entry per dataset so `datasets.load_dataset(folder or repo, name)` and the Hub's
    viewer read its Parquet file. Empty datasets are left out: `datasets` cannot load a split with no rows.
    """
    loadable = [name for name, values in stats.items() if values["rows"]]
    if not loadable:
        return None
    default = "process" if "process" in loadable else loadable[0]
    return [{"config_name": name, **({"default": True} if name == default else {}),
             "data_files": [{"split": "train", "path": f"{name}.parquet"}]} for name in loadable]


# The Hub's task categories: a PRM is trained as a token classifier (TRL's PRMTrainer), reward
# models on pairs and labelled outcomes as sequence classifiers, critiques as text generation.
TASK_CATEGORIES = {"process": "token-classification", "preference": "text-classification",
                   "kto": "text-classification", "critiques": "text-generation"}
DATASET_TAGS = {"process": "process-reward-model", "preference": "preference", "kto": "kto",
                "critiques": "critique"}
_SIZE_CATEGORIES = ["n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                    "1B<n<10B", "10B<n<100B", "100B<n<1T"]


def size_category(rows: int) -> str:
    """The Hub's size category of a dataset with `rows` rows (each bound 10x the last, from 1K)."""
    return next((name for power, name in enumerate(_SIZE_CATEGORIES, start=3) if rows < 10**power), "n>1T")


def _source_datasets(sources: list[dict[str, Any]]) -> list[str] | None:
    """`original` for problems rmforge generated, the Hub ids of imported Hub datasets (`hf:ID:SPLIT`)."""
    names = [row["source"] for row in sources]
    original = ["original"] if any(name.startswith("generated:") for name in names) else []
    hub = sorted({name.split(":")[1] for name in names if name.startswith("hf:")})
    return original + hub or None


def card_metadata(
    stats: dict[str, dict[str, object]], provenance: dict[str, Any], settings: ExportConfig
) -> DatasetCardData:
    """The card's YAML header, as the Hub reads it."""
    present = [name for name, values in stats.items() if values["rows"]]
    generated = any(row["generator"] in GENERATED_BY for row in provenance["generation"])
    tags = (["rmforge", "reward-model", "trl"] + [DATASET_TAGS[name] for name in present]
            + (["synthetic"] if generated else []) + (["conversational"] if settings.format == "conversational" else []))
    return DatasetCardData(
        pretty_name=_title(settings),
        license=settings.license,
        language=settings.language,
        size_categories=[size_category(max((int(v["rows"]) for v in stats.values()), default=0))],
        task_categories=sorted({TASK_CATEGORIES[name] for name in present}) or None,
        source_datasets=_source_datasets(provenance["sources"]),
        tags=tags,
        configs=_configs(stats),
    )


def _title(settings: ExportConfig) -> str:
    return settings.pretty_name or "rmforge export"


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
        "`critique` (`completion` in the conversational format) is a judge's review of `response`; "
        "`first_error_step` is the index of the first step it found wrong (-1: none, empty: undecided); "
        "`verdict` is its verdict on the outcome."
    ),
}


def _format_section(names: list[str], settings: ExportConfig, separator: str | None) -> list[str]:
    if settings.format == "conversational":
        lines = [(
            "Conversational format (TRL): `prompt` is a list of messages, the system prompt rmforge's generator "
            "sent (for rollouts it sampled; an imported rollout's prompt is its question alone) and the question "
            "as the user's message; `chosen`, `rejected` and `completion` each hold one assistant message. The "
            "worked example the generator sends before the question is a formatting aid and is left out."
        )]
        if "critiques" in names:
            lines.append("In `critiques`, `prompt` is the judge's request (its template over the rollout's stored "
                         "steps) and `completion` the critique: ready for TRL's SFTTrainer.")
        if "process" in names:
            lines.append("`process` stays in the standard format: TRL's PRMTrainer reads text prompts only.")
    else:
        lines = [(
            f"Standard format (TRL): each `prompt` ends with a blank line ({PROMPT_END!r}). TRL joins a standard "
            "prompt and its completion as they are, so without it the problem's last word and the response's "
            "first would run together. `rmforge export --format conversational` writes chat messages instead."
        )]
    if separator is not None:
        lines.append(
            f"`process` steps have no whitespace around them and none contains the step separator {separator!r}: "
            f"train with `PRMConfig(step_separator={separator!r})` and split new solutions on it to score them "
            f"(`{MANIFEST}` and `{CONFIG_FILE}` hold it as `step_separator`)."
        )
    return lines + [""]


def _sampling(row: dict[str, Any]) -> str:
    return "(imported)" if row["generator"] == "import" else f"`{row['sampling']}`"


def _run_list(run_ids: list[str]) -> str:
    return ", ".join(f"`{run_id}`" for run_id in run_ids)


def _annotator_version_row(row: dict[str, Any], options: dict[str, Any]) -> str:
    models = ", ".join(f"`{model}`" for model in row["models"] or [])
    given = f"`{json.dumps(options[row['annotator']], sort_keys=True)}`" if row["annotator"] in options else ""
    return (f"| `{row['annotator']}` | {row['version']} | `{row['config_hash']}` | {models} | {row['step_labels']} | "
            f"{row['outcome_labels']} | {given} | {_run_list(row['runs'])} |")


def _run_row(run: dict[str, Any]) -> str:
    started = f"{run['started_at']:%Y-%m-%d %H:%M}" if run["started_at"] else ""
    return f"| `{run['run_id']}` | {run['flow'] or 'not recorded'} | {run['status'] or ''} | {started} |"


def _provenance_sections(provenance: dict[str, Any]) -> list[str]:
    """Models and sampling, problem sources, annotator versions, and the runs behind the data."""
    lines = ["## Generation", "", "Rollouts behind the data (kept by curation):", "",
             "| model | generator | sampling | rollouts | runs |", "|---|---|---|---|---|"]
    lines += [f"| `{row['model']}` | {row['generator']} | {_sampling(row)} | {row['rollouts']} | "
              f"{_run_list(row['runs'])} |" for row in provenance["generation"]]
    sources = ", ".join(f"`{row['source']}` ({row['problems']})" for row in provenance["sources"])
    lines += ["", f"Problem sources: {sources or 'none'}.", ""]
    lines += ["Versions and configs of those annotators (their labels on those rollouts; options from the latest "
              + "annotate run):",
              "", "| annotator | version | config hash | models | step labels | outcome labels | options | runs |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [_annotator_version_row(row, provenance["annotator_options"]) for row in provenance["annotators"]]
    lines += ["", "## Runs", "", f"The runs behind this data (their configs are in `{CONFIG_FILE}`):", "",
              "| run | flow | status | started (UTC) |", "|---|---|---|---|"]
    lines += [_run_row(run) for run in provenance["runs"]]
    return lines + [""]


def dataset_card(
    stats: dict[str, dict[str, object]],
    provenance: dict[str, Any],
    run_id: str | None,
    settings: ExportConfig | None = None,
    separator: str | None = None,
) -> str:
    """The README.md of an export: the Hub's metadata, load instructions, format, label meaning,
    provenance, counts."""
    settings = settings or ExportConfig()
    where = settings.push_to_hub or "path/to/this/folder"
    lines = [
        f"# {_title(settings)}",
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
        f'datasets.load_dataset("{where}", "process")  # any non-empty dataset above',
        'datasets.load_from_disk("path/to/this/folder/hf/process")  # the local export',
        "```",
        "",
    ]
    if settings.push_to_hub:
        lines += [("The Hub copy holds the Parquet files, this card and the config; the local export also has "
                   "the JSONL files and `hf/` folders."), ""]
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
    lines += ["## Format", ""] + _format_section(list(stats), settings, separator)

    lines += ["## What a label means", ""]
    lines += [f"- **{name}**: {_LABEL_MEANING[name]}" for name in stats] + [""]

    lines += ["## Annotators and consensus", ""]
    curation = provenance["curation"]
    if curation is None:
        lines += ["No curate run is recorded in the database.", ""]
    else:
        # As recorded, over today's defaults: a run recorded under older settings still reads.
        rules = {**CurationConfig().model_dump(), **curation.get("curation", {})}
        consensus_help = CurationConfig.model_fields["consensus"].description
        required = ", ".join(f"`{a}`" for a in rules["required_annotators"]) or "none"
        near = f"on (cosine >= {rules['near_duplicate_threshold']})" if rules["near_dedupe"] else "off"
        lines += [
            "Voting annotators of the latest curation: "
            + ", ".join(f"`{a}`" for a in curation.get("annotators", [])) + ".",
            f"Consensus rule: `{rules['consensus']}` ({consensus_help}); required annotators: {required}.",
            (
                "Labels resting only on a rollout's own correct outcome "
                + ("abstained (`direct_step_evidence`)." if rules["direct_step_evidence"]
                   else "voted (`direct_step_evidence` off); `outcome_implied` marks them.")
            ),
            (
                f"Deduplication: exact {'on' if rules['exact_dedupe'] else 'off'}, near-duplicate {near}; "
                f"at most {rules['max_pairs_per_problem']} preference pairs per problem."
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
    lines += [""] + _provenance_sections(provenance)
    lines += ["## Counts and balance", ""]
    lines += [f"- **{name}**: {json.dumps(values)}" for name, values in stats.items()]
    lines += [
        "",
        "## Columns",
        "",
    ] + [
        f"- **{name}**: " + ", ".join(f"`{f.name}` ({f.type})" for f in export_schema(name, settings.format))
        for name in stats
    ] + [
        "",
        f"`{MANIFEST}` lists every file of this export with its size and sha256; this folder holds",
        "nothing else (the next export into it replaces it whole).",
    ]
    body = "\n".join(lines) + "\n"
    return str(DatasetCard(f"---\n{card_metadata(stats, provenance, settings).to_yaml()}\n---\n\n{body}"))


# ---------------------------------------------------------------- the output folder

def _owned_names() -> set[str]:
    return {CARD, MANIFEST, CONFIG_FILE, "hf"} | {f"{n}.{ext}" for n in EXPORTS for ext in ("parquet", "jsonl")}


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
    os.replace(staging / CONFIG_FILE, out / CONFIG_FILE)
    os.replace(staging / CARD, out / CARD)
    os.replace(staging / MANIFEST, out / MANIFEST)
    for folder in (out / "hf", out):  # the renames themselves
        _fsync(folder)


def effective_config(
    settings: ExportConfig, names: list[str], separator: str | None, provenance: dict[str, Any], run_id: str | None
) -> str:
    """`rmforge_config.yaml`: this export's settings and the config of every run behind the data."""
    document = {
        "export": {**settings.model_dump(), "run_id": run_id, "datasets": names, "step_separator": separator},
        "runs": [{**run, "started_at": run["started_at"].isoformat() if run["started_at"] else None}
                 for run in provenance["runs"]],
    }
    header = "# The settings behind this rmforge export: its own, then each run's that made the data.\n"
    return header + yaml.dump(document, Dumper=_ConfigDumper, sort_keys=False, allow_unicode=True)


class _ConfigDumper(yaml.SafeDumper):
    """Writes text holding newlines (the step separator, prompts) as one double-quoted line with escapes."""


_ConfigDumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style='"' if "\n" in text else None))


@task(name="export-datasets", cache_policy=NO_CACHE)
def export_datasets(
    db: str, out_dir: str, names: list[str] | None = None, run_id: str | None = None,
    settings: ExportConfig | None = None,
) -> dict[str, dict[str, object]]:
    """Write the datasets, their card, config and manifest into `out_dir`; returns stats per dataset."""
    settings = settings or ExportConfig()
    names = check_export(db, out_dir, names)
    out = Path(out_dir)
    stats: dict[str, dict[str, object]] = {}
    separator = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        with _exclusive(out), Store(db, read_only=True) as store:
            for leftover in out.glob(f"{STAGING_PREFIX}*"):  # from an export that was killed
                shutil.rmtree(leftover, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
            try:
                for name in names:
                    table = fetch_dataset(store, name, settings.format)
                    stats[name] = dataset_stats(name, table)
                    if name == "process":
                        separator = step_separator(table)
                    write_dataset(staging, name, table)
                provenance = export_provenance(store)
                (staging / CONFIG_FILE).write_text(
                    effective_config(settings, names, separator, provenance, run_id), encoding="utf-8")
                (staging / CARD).write_text(dataset_card(stats, provenance, run_id, settings, separator),
                                            encoding="utf-8")
                manifest = {
                    "format": "rmforge-export",
                    "version": 1,
                    "run_id": run_id,
                    "database": provenance["database"],
                    "exported_at": utc_now().isoformat(),
                    "dataset_format": settings.format,
                    "step_separator": separator,
                    "datasets": stats,
                }
                publish(staging, out, names, manifest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise ExportError(f"cannot write the export: {exc.strerror or exc}", out) from exc
    return stats
