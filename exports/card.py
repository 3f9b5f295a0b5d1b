"""The dataset card of an export (its README.md, a Hub dataset card): the Hub's metadata, how to load
each dataset, its format, what its labels mean, the annotators and the consensus behind them, where
the data came from (rmforge.exports.provenance) and the counts."""

from __future__ import annotations

import json
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from rmforge.annotators import REGISTRY, annotator_class
from rmforge.exports.datasets import GENERATED_BY
from rmforge.exports.files import CONFIG_FILE, FILE_FORMATS, MANIFEST
from rmforge.schemas.config import CurationConfig, ExportConfig
from rmforge.schemas.exports import EXPORTS, PROMPT_END, export_schema
from rmforge.schemas.records import utc_now


def _annotator_row(name: str) -> str:
    if name not in REGISTRY:
        return f"| `{name}` | not a known annotator | | | | |"
    evidence = annotator_class(name).evidence
    yes = {True: "yes", False: "no"}
    return (
        f"| `{name}` | {yes[evidence.confirms_steps]} | {yes[evidence.refutes_steps]} | "
        f"{yes[evidence.labels_outcomes]} | {evidence.authority} | {evidence.score} |"
    )


def _rows(values: dict[str, object]) -> int:
    rows = values["rows"]
    assert isinstance(rows, int)  # dataset_stats counts rows
    return rows


def _configs(stats: dict[str, dict[str, object]]) -> list[dict[str, Any]] | None:
    """One `configs` entry per dataset so `datasets.load_dataset(folder or repo, name)` and the Hub's
    viewer read its Parquet file. Empty datasets are left out: `datasets` cannot load a split with no rows.
    """
    loadable = [name for name, values in stats.items() if values["rows"]]
    if not loadable:
        return None
    default = "process" if "process" in loadable else loadable[0]
    return [
        {
            "config_name": name,
            **({"default": True} if name == default else {}),
            "data_files": [{"split": "train", "path": f"{name}.parquet"}],
        }
        for name in loadable
    ]


_SIZE_CATEGORIES = [
    "n<1K",
    "1K<n<10K",
    "10K<n<100K",
    "100K<n<1M",
    "1M<n<10M",
    "10M<n<100M",
    "100M<n<1B",
    "1B<n<10B",
    "10B<n<100B",
    "100B<n<1T",
]


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
    tags = (
        ["rmforge", "reward-model", "trl"]
        + [EXPORTS[name].tag for name in present]
        + (["synthetic"] if generated else [])
        + (["conversational"] if settings.format == "conversational" else [])
    )
    return DatasetCardData(
        pretty_name=_title(settings),
        license=settings.license,
        language=settings.language,
        size_categories=[size_category(max((_rows(values) for values in stats.values()), default=0))],
        task_categories=sorted({EXPORTS[name].task_category for name in present}) or None,
        source_datasets=_source_datasets(provenance["sources"]),
        tags=tags,
        configs=_configs(stats),
    )


def _title(settings: ExportConfig) -> str:
    return settings.pretty_name or "rmforge export"


def _format_section(names: list[str], settings: ExportConfig, separator: str | None) -> list[str]:
    if settings.format == "conversational":
        lines = [
            (
                "Conversational format (TRL): `prompt` is a list of messages, the system prompt rmforge's generator "
                "sent (for rollouts it sampled; an imported rollout's prompt is its question alone) and the question "
                "as the user's message; `chosen`, `rejected` and `completion` each hold one assistant message. The "
                "worked example the generator sends before the question is a formatting aid and is left out."
            )
        ]
        if "critiques" in names:
            lines.append(
                "In `critiques`, `prompt` is the judge's request (its template over the rollout's stored "
                "steps) and `completion` the critique: ready for TRL's SFTTrainer."
            )
        if "process" in names:
            lines.append("`process` stays in the standard format: TRL's PRMTrainer reads text prompts only.")
    else:
        lines = [
            (
                f"Standard format (TRL): each `prompt` ends with a blank line ({PROMPT_END!r}). TRL joins a standard "
                "prompt and its completion as they are, so without it the problem's last word and the response's "
                "first would run together. `rmforge export --format conversational` writes chat messages instead."
            )
        ]
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
    return (
        f"| `{row['annotator']}` | {row['version']} | `{row['config_hash']}` | {models} | {row['step_labels']} | "
        f"{row['outcome_labels']} | {given} | {_run_list(row['runs'])} |"
    )


def _run_row(run: dict[str, Any]) -> str:
    started = f"{run['started_at']:%Y-%m-%d %H:%M}" if run["started_at"] else ""
    return f"| `{run['run_id']}` | {run['flow'] or 'not recorded'} | {run['status'] or ''} | {started} |"


def _provenance_sections(provenance: dict[str, Any]) -> list[str]:
    """Models and sampling, problem sources, annotator versions, and the runs behind the data."""
    lines = [
        "## Generation",
        "",
        "Rollouts behind the data (kept by curation):",
        "",
        "| model | generator | sampling | rollouts | runs |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| `{row['model']}` | {row['generator']} | {_sampling(row)} | {row['rollouts']} | {_run_list(row['runs'])} |"
        for row in provenance["generation"]
    ]
    sources = ", ".join(f"`{row['source']}` ({row['problems']})" for row in provenance["sources"])
    lines += ["", f"Problem sources: {sources or 'none'}.", ""]
    lines += [
        "Versions and configs of those annotators (their labels on those rollouts; options from the latest "
        + "annotate run):",
        "",
        "| annotator | version | config hash | models | step labels | outcome labels | options | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_annotator_version_row(row, provenance["annotator_options"]) for row in provenance["annotators"]]
    lines += [
        "",
        "## Runs",
        "",
        f"The runs behind this data (their configs are in `{CONFIG_FILE}`):",
        "",
        "| run | flow | status | started (UTC) |",
        "|---|---|---|---|",
    ]
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
        files = ", ".join(f"`{fmt.where(name)}{'/' if fmt.folder else ''}`" for fmt in FILE_FORMATS)
        lines.append(f"| {name} | {EXPORTS[name].format} | {values['rows']} | {files} |")
    lines += [
        "",
        "```python",
        "import datasets",
        "",  # formatted as ruff/black would: a card inside a checkout passes `ruff format --check`
        f'datasets.load_dataset("{where}", "process")  # any non-empty dataset above',
        'datasets.load_from_disk("path/to/this/folder/hf/process")  # the local export',
        "```",
        "",
    ]
    if settings.push_to_hub:
        lines += [
            (
                "The Hub copy holds the Parquet files, this card and the config; the local export also has "
                "the JSONL files and `hf/` folders."
            ),
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
    lines += ["## Format", ""] + _format_section(list(stats), settings, separator)

    lines += ["## What a label means", ""]
    lines += [f"- **{name}**: {EXPORTS[name].meaning}" for name in stats] + [""]

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
            + ", ".join(f"`{a}`" for a in curation.get("annotators", []))
            + ".",
            f"Consensus rule: `{rules['consensus']}` ({consensus_help}); required annotators: {required}.",
            (
                "Labels resting only on a rollout's own correct outcome "
                + (
                    "abstained (`direct_step_evidence`)."
                    if rules["direct_step_evidence"]
                    else "voted (`direct_step_evidence` off); `outcome_implied` marks them."
                )
            ),
            (
                f"Deduplication: exact {'on' if rules['exact_dedupe'] else 'off'}, near-duplicate {near}; "
                f"at most {rules['max_pairs_per_problem']} preference pairs per problem."
            ),
            "",
        ]
    used = sorted(set(provenance["step_annotators"]) | set(provenance["outcome_annotators"]))
    lines += (
        [
            "Annotators behind the exported labels (what their verdicts are evidence of):",
            "",
            "| annotator | confirms steps | refutes steps | labels outcomes | authority | score |",
            "|---|---|---|---|---|---|",
        ]
        + [_annotator_row(name) for name in used]
        + [""]
    )
    lines.append(
        "Step labels in `process` come from: "
        + (", ".join(f"`{a}`" for a in provenance["step_annotators"]) or "none")
        + ". Outcome verdicts for `kto` come from: "
        + (", ".join(f"`{a}`" for a in provenance["outcome_annotators"]) or "none")
        + "."
    )
    if provenance["critics"] and "critiques" in stats:
        critics = ", ".join(
            f"`{c['annotator']}` ({c['model'] or 'no model'}: {c['critiques']})" for c in provenance["critics"]
        )
        lines.append(f"Critiques by: {critics}.")
    lines += [""] + _provenance_sections(provenance)
    lines += ["## Counts and balance", ""]
    lines += [f"- **{name}**: {json.dumps(values)}" for name, values in stats.items()]
    lines += (
        [
            "",
            "## Columns",
            "",
        ]
        + [
            f"- **{name}**: " + ", ".join(f"`{f.name}` ({f.type})" for f in export_schema(name, settings.format))
            for name in stats
        ]
        + [
            "",
            f"`{MANIFEST}` lists every file of this export with its size and sha256; this folder holds",
            "nothing else (the next export into it replaces it whole).",
        ]
    )
    body = "\n".join(lines) + "\n"
    return str(DatasetCard(f"---\n{card_metadata(stats, provenance, settings).to_yaml()}\n---\n\n{body}"))
