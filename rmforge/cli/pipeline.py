"""The commands that run the pipeline's stages: `run`, `annotate`, `curate`, `export`, `eval`.

Each calls its function in `rmforge.api` (the same checks, the flow inside `running_flows()`)
after checking its own flags, so that messages name them, and ends with `report(...)`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from rmforge.cli.options import (
    Backend,
    ClusterAddressOption,
    ConfigOption,
    DatasetFormat,
    DbOption,
    JsonOption,
    Source,
    TaskRunner,
    TaskRunnerOption,
    WorkersOption,
    compute_options,
)
from rmforge.cli.output import console, counted, counted_keys, given_db, next_command, report, say
from rmforge.errors import UserError
from rmforge.schemas.config import PipelineConfig


def _per_stage(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-annotator / per-stage parts of a flow's summary (not e.g. `resumes`)."""
    return {name: part for name, part in summary.items() if isinstance(part, dict)}


def _resumed_lines(summary: dict[str, Any]) -> list[str]:
    return [f"  (resumed after crashed run {summary['resumes']})"] if summary.get("resumes") else []


def _annotate_lines(summary: dict[str, Any]) -> list[str]:
    lines = _resumed_lines(summary)
    for name, result in _per_stage(summary).items():
        if result.get("status") == "unavailable":
            lines.append(f"  {name}: unavailable here ({result['reason']})")
        else:
            written = {k: v for k, v in result.items() if k not in ("status", "rollouts", "annotator_costs") and v}
            details = f" ({counted_keys(written)})" if written else ""
            lines.append(f"  {name}: {counted(result['rollouts'], 'rollout')} labelled{details}")
    return lines


def _curate_lines(summary: dict[str, Any]) -> list[str]:
    lines = _resumed_lines(summary)
    for stage, values in _per_stage(summary).items():
        if stage == "report":
            continue
        lines.append(f"  {stage}: {counted_keys(values)}")
        # Why rollouts gave no process example (tasks/datasets.py), one reason a line: the README
        # sends users here to read them.
        lines += [
            f"    no process example: {n} {reason}" for reason, n in (values.get("no_process_example") or {}).items()
        ]
    if "report" in summary:
        lines.append(f"  report: {summary['report']['chart']} (rmforge report {summary['report']['run_id'][:8]})")
    return lines


def run(
    config_file: Path | None = ConfigOption,
    db: str | None = DbOption,
    problems: int | None = typer.Option(None, "--problems", min=1, help="How many problems."),
    samples: int | None = typer.Option(None, "--samples", min=1, help="Rollouts per problem."),
    source: Source | None = typer.Option(None, help="Where problems come from."),
    problems_path: str | None = typer.Option(None, "--problems-path", help="File or HF dataset for file/hf."),
    annotators: str | None = typer.Option(None, help="Comma-separated annotator names (see `rmforge annotators`)."),
    backend: Backend | None = typer.Option(None, help="vllm: engine in this process; openai: a server."),
    model: str | None = typer.Option(None, help="Model folder, hub id, or served model name."),
    base_url: str | None = typer.Option(
        None, help="OpenAI-compatible server URL (backend openai); several, comma-separated, share the requests."
    ),
    max_tokens: int | None = typer.Option(None, min=1, help="Max new tokens per rollout."),
    seed: int | None = typer.Option(None, help="Problem generator seed."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Rollouts per batch."),
    export_dir: Path | None = typer.Option(None, "--export", help="Also export datasets here."),
    task_runner: TaskRunner | None = TaskRunnerOption,
    workers: int | None = WorkersOption,
    cluster_address: str | None = ClusterAddressOption,
    json_output: bool = JsonOption,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the effective configuration (YAML: the config "
        "file, the flags and every default) and exit without running.",
    ),
) -> None:
    """Run the whole pipeline: problems -> rollouts -> labels -> curated datasets."""
    from rmforge import api
    from rmforge.checks import as_list, check_annotators, check_folder
    from rmforge.config_files import effective_config, load_config, validation_message

    config = load_config(config_file)
    config = config.model_copy(update={"compute": compute_options(config, task_runner, workers, cluster_address)})
    updates: dict[str, Any] = {}
    problem_updates = {
        k: v
        for k, v in {
            "count": problems,
            "kind": source.value if source else None,
            "path": problems_path,
            "seed": seed,
        }.items()
        if v is not None
    }
    if problem_updates:
        updates["problems"] = config.problems.model_copy(update=problem_updates)
    sampling_updates = {k: v for k, v in {"n": samples, "max_tokens": max_tokens}.items() if v is not None}
    if sampling_updates:
        updates["sampling"] = config.sampling.model_copy(update=sampling_updates)
    servers = as_list(base_url) if base_url else []  # several: data-parallel (generator.base_urls)
    generator_updates = {
        k: v
        for k, v in {
            "backend": backend.value if backend else None,
            "model": model,
            "base_url": servers[0] if len(servers) == 1 else None,
            "base_urls": servers if len(servers) > 1 else None,
        }.items()
        if v is not None
    }
    if generator_updates:
        updates["generator"] = config.generator.model_copy(update=generator_updates)
    if annotators is not None:
        updates["annotators"] = as_list(annotators)
    if batch_size is not None:
        updates["batch_size"] = batch_size
    try:
        config = PipelineConfig.model_validate(config.model_copy(update=updates).model_dump())
    except ValidationError as exc:
        raise UserError(validation_message(exc)) from None
    check_annotators(config.annotators, config.annotator_options, option="--annotators", config_file=config_file)
    if export_dir is not None:
        check_folder(export_dir, "--export")
    if dry_run:
        from rmforge.store import resolve_store

        effective = {
            "store": str(resolve_store(db)),
            "export_dir": str(export_dir) if export_dir else None,
            **effective_config(config),
        }
        sys.stdout.write(yaml.safe_dump(effective, sort_keys=False, allow_unicode=True))
        return

    result = api.run(config, db=db, export=export_dir)
    summary, path = result.summary, result.db
    generated = summary["generate"]
    lines = [
        f"Generated {counted(generated['new_rollouts'], 'rollout')} for {counted(generated['problems'], 'problem')} "
        f"({counted(generated['new_steps'], 'step')}).",
        "Labelled:",
        *_annotate_lines(summary["annotate"]),
        "Curated:",
        *_curate_lines(summary["curate"]),
        f"Data: {path}",
    ]
    lines.append(
        f"Exported to {export_dir}/"
        if export_dir
        else "Next: " + next_command("rmforge export --out data/exports", given_db(db))
    )
    lines.append("Query: " + next_command('rmforge sql "SELECT * FROM process_examples LIMIT 5"', given_db(db)))
    report(summary, json_output, lines)


def annotate(
    annotator: str = typer.Option(
        ..., "--annotator", "--annotators", help="NAME[,NAME...] (see `rmforge annotators`)."
    ),
    db: str | None = DbOption,
    config_file: Path | None = ConfigOption,
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Rollouts per task."),
    task_runner: TaskRunner | None = TaskRunnerOption,
    workers: int | None = WorkersOption,
    cluster_address: str | None = ClusterAddressOption,
    retry_errors: bool = typer.Option(
        False, "--retry-errors", help="Also relabel rollouts labelled unknown for an annotator error."
    ),
    json_output: bool = JsonOption,
) -> None:
    """Label the stored rollouts with the named annotators (only what is not labelled yet)."""
    from rmforge import api
    from rmforge.checks import as_list, check_annotators
    from rmforge.config_files import load_config

    config = load_config(config_file)
    compute = compute_options(config, task_runner, workers, cluster_address)
    names = check_annotators(
        as_list(annotator), config.annotator_options, option="--annotator", config_file=config_file
    )
    config = config.model_copy(update={"compute": compute, "batch_size": batch_size or config.batch_size})
    result = api.annotate(names, db=db, config=config, retry_errors=retry_errors)
    summary, path = result.summary, result.db
    report(
        summary,
        json_output,
        [
            "Labelled:",
            *_annotate_lines(summary),
            f"Data: {path}",
            "Next: " + next_command(f"rmforge curate --annotators {','.join(names)}", given_db(db)),
        ],
    )
    # Not an error: the summary says why each annotator could not label (exit 2, as when the
    # API refuses annotators unavailable here before any flow).
    if all(s.get("status") == "unavailable" for s in _per_stage(summary).values()):
        raise typer.Exit(code=2)


def curate(
    db: str | None = DbOption,
    annotators: str | None = typer.Option(None, help="Annotators that vote (default: the config's)."),
    config_file: Path | None = ConfigOption,
    decontaminate: list[str] | None = typer.Option(
        None,
        "--decontaminate",
        help="Evaluation set (JSON/JSONL/Parquet, HF dataset folder or id) whose "
        "problems are dropped; repeatable, added to the config's curation.decontaminate.",
    ),
    json_output: bool = JsonOption,
) -> None:
    """Rebuild consensus, decontamination, deduplication and the curated datasets."""
    from rmforge import api
    from rmforge.checks import as_list, check_annotators, check_eval_sets
    from rmforge.config_files import load_config

    config = load_config(config_file)
    names = check_annotators(
        as_list(annotators) if annotators is not None else config.annotators, option="--annotators"
    )
    eval_sets = check_eval_sets(decontaminate or [], option="--decontaminate")
    result = api.curate(names, db=db, config=config, decontaminate=eval_sets)
    summary, path = result.summary, result.db
    report(
        summary,
        json_output,
        [
            "Curated:",
            *_curate_lines(summary),
            f"Data: {path}",
            "Next: " + next_command("rmforge export --out data/exports", given_db(db)),
        ],
    )


def export(
    db: str | None = DbOption,
    out: Path = typer.Option(Path("data/exports"), help="Output folder."),
    datasets: str | None = typer.Option(None, help="Comma-separated subset (default all)."),
    dataset_format: DatasetFormat | None = typer.Option(
        None,
        "--format",
        help="standard: text prompts and completions (default); conversational: TRL's chat "
        "messages, with the generator's system prompt.",
    ),
    push_to_hub: str | None = typer.Option(
        None, "--push-to-hub", metavar="REPO", help="Also push to this Hub dataset repo (user/name)."
    ),
    private: bool = typer.Option(False, "--private", help="Create the Hub repo private."),
    config_file: Path | None = typer.Option(
        None,
        "--config",
        help="YAML/JSON PipelineConfig whose `export` section holds the card's license, language and name.",
    ),
    json_output: bool = JsonOption,
) -> None:
    """Export curated datasets (Parquet, JSONL, HF datasets) with a dataset card; optionally push them."""
    from rmforge import api
    from rmforge.checks import as_list, check_datasets, check_folder
    from rmforge.config_files import export_settings

    names = check_datasets(as_list(datasets) if datasets is not None else None, option="--datasets")
    check_folder(out, "--out")
    settings = export_settings(
        config_file, format=dataset_format.value if dataset_format else None, push_to_hub=push_to_hub, private=private
    )
    if settings.private and not settings.push_to_hub:
        raise UserError("--private: only with --push-to-hub (or export.push_to_hub in the config)")
    summary = api.export(
        db=db,
        out=out,
        datasets=names,
        config=config_file,
        format=settings.format,
        push_to_hub=settings.push_to_hub,
        private=settings.private,
    ).summary
    exported = [f"  {name}: {counted_keys(stats)}" for name, stats in summary.items() if isinstance(stats, dict)]
    lines = [
        "Exported:",
        *exported,
        f"Files: {out}/ (dataset card: {out}/README.md)",
        f"Load: datasets.load_from_disk('{out}/hf/process') or the Parquet/JSONL files",
    ]
    if "hub_commit" in summary:
        lines.append(f"Pushed to the Hub: {settings.push_to_hub} ({summary['hub_commit']})")
    report(summary, json_output, lines)


def _score(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def evaluate(
    file: Path = typer.Argument(..., help="Human-labelled solutions in ProcessBench format."),
    annotators: str = typer.Option(..., "--annotators", "--annotator", help="NAME[,NAME...] to evaluate."),
    policies: str | None = typer.Option(None, help="Consensus policies to score, comma-separated (default: all)."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default data/eval/<file stem>)."),
    gold: Path | None = typer.Option(None, "--gold", help="JSON {id: gold answer} (default: FILE_gold_answers.json)."),
    config_file: Path | None = ConfigOption,
    db: str | None = typer.Option(None, "--db", help="Store to use (default: a fresh one in the report folder)."),
    json_output: bool = typer.Option(False, "--json", help="Print the scores as JSON on stdout (nothing else)."),
) -> None:
    """Score annotators and consensus policies against human labels (ProcessBench format)."""
    from rich.table import Table

    from rmforge import api
    from rmforge.checks import as_list, check_annotators, check_folder, check_policies
    from rmforge.config_files import load_config

    config = load_config(config_file)
    names = check_annotators(
        as_list(annotators), config.annotator_options, option="--annotators", config_file=config_file
    )
    chosen = check_policies(as_list(policies) if policies else None, option="--policies")
    if out is not None:
        check_folder(out, "--out")
    evaluation = api.evaluate(file, names, policies=chosen, out=out, gold=gold, config=config, db=db)
    if json_output:
        report({"scores": evaluation.scores, "files": evaluation.files}, True, [])
        return
    from rmforge.tasks.evaluate import percent

    table = Table(
        "labels from",
        "F1 %",
        "err acc",
        "ok acc",
        "incorrect prec (n)",
        "recall",
        "correct prec (n)",
        "coverage",
        "completions",
        "s",
        title=f"{file.name} vs human labels",
    )
    for row in evaluation.scores:
        table.add_row(
            row["name"],
            percent(row["f1"]),
            _score(row["acc_erroneous"]),
            _score(row["acc_correct"]),
            f"{_score(row['incorrect_precision'])} ({row['incorrect_labels']})",
            _score(row["incorrect_recall"]),
            f"{_score(row['correct_precision'])} ({row['correct_labels']})",
            _score(row["coverage"]),
            _score(row["completions"]),
            _score(row["seconds"]),
        )
    console.print(table)
    outcome_rows = [row for row in evaluation.scores if row["outcomes_decided"] is not None]
    if outcome_rows:
        answers = Table(
            "labels from",
            "agreement (decided)",
            "decided",
            "incorrect prec",
            title="final answers vs human final_answer_correct",
        )
        for row in outcome_rows:
            answers.add_row(
                row["name"],
                _score(row["outcome_agreement"]),
                f"{row['outcomes_decided']} ({_score(row['outcome_coverage'])})",
                _score(row["outcome_incorrect_precision"]),
            )
        console.print(answers)
    files = evaluation.files
    say(f"Report: {files['report']} (chart {files['chart']}, metrics {files['metrics']})")
