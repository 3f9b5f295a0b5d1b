"""The `rmforge` command line: checks arguments, runs the stages, says what happened.

Adding a command: write a function decorated with `@app.command()` (or
`@import_app.command("name")` for `rmforge import name`) below. Raise
`UserError("...")` for anything the user must fix: it is shown as one line on stderr
with exit code 1. Commands that run a stage call its function in `rmforge.api` (the
Python API: the same checks, the flow inside `running_flows()`), check their own flags
first so that messages name them, and end with `report(summary, json_output, lines)`.
Check everything you can before the first flow starts: Prefect takes seconds to start.
"""

from __future__ import annotations

import os

# Before Prefect is imported: no telemetry from an offline machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Prefect's 20 s default for its temporary server is too short on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Each call to a Prefect server that stopped answering retries after 2 s and 4 s, not 5 times
# over a minute: a run failing on a lost server makes two such calls, so the command gives up
# in about 15 s instead of 2.5 minutes. Work already done stays stored and a rerun resumes.
os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "2")

import csv
import io
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional, get_args

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rmforge.console import (RmforgeGroup, Settings, UserError, configure_logging, version_callback)
from rmforge.schemas.config import (ComputeConfig, ExportConfig, GeneratorConfig, PipelineConfig,
                                    ProblemSourceConfig)

app = typer.Typer(
    cls=RmforgeGroup,
    help="Synthesize, label and curate data for reward models.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Import existing data.", no_args_is_help=True)
app.add_typer(import_app, name="import")
server_app = typer.Typer(help="A local Prefect server in the background (faster commands, a UI).",
                         no_args_is_help=True)
app.add_typer(server_app, name="server")
console = Console()

# Choices come from the config schema, so help and validation never drift from it.
def _choices(name: str, field: Any) -> Any:
    return Enum(name, {value: value for value in get_args(field.annotation)}, type=str)


Source = _choices("Source", ProblemSourceConfig.model_fields["kind"])
Backend = _choices("Backend", GeneratorConfig.model_fields["backend"])
TaskRunner = _choices("TaskRunner", ComputeConfig.model_fields["task_runner"])
DatasetFormat = _choices("DatasetFormat", ExportConfig.model_fields["format"])


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


DbOption = typer.Option(None, "--db", envvar="RMFORGE_DB",
                        help="DuckDB file (default data/rmforge.duckdb) or ducklake:CATALOG;data=FOLDER.")
ConfigOption = typer.Option(None, "--config", help="YAML/JSON PipelineConfig (see data/configs/).")
JsonOption = typer.Option(False, "--json", help="Print the summary as JSON on stdout (nothing else).")
# Help text is Rich markup: `[scale]` would be read as a style tag and vanish.
TaskRunnerOption = typer.Option(None, "--task-runner", help="Where annotation batches run (dask/ray: pip install "
                                + escape("'rmforge[scale]')."))
WorkersOption = typer.Option(None, "--workers", min=1, help="Batches labelled at once: threads, or worker "
                             "processes of a local Dask/Ray cluster.")
ClusterAddressOption = typer.Option(None, "--cluster-address", help="Use a running cluster: Dask scheduler "
                                    "(tcp://host:8786) or Ray (ray://host:10001, or auto).")


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show library INFO logs (Prefect, vLLM, HTTP)."),
    debug: bool = typer.Option(False, "--debug", envvar="RMFORGE_DEBUG", help="Show tracebacks of errors."),
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Synthesize, label and curate data for reward models."""
    Settings.debug, Settings.verbose = debug, verbose
    configure_logging(verbose, debug)


# ------------------------------------------------------------------ checks


def compute_options(config: PipelineConfig, task_runner: Optional[Any], workers: Optional[int],
                    address: Optional[str]) -> ComputeConfig:
    """The config's `compute` with the command line's choices; a runner whose package is
    missing here, or an address without a cluster runner, is a usage error (exit 2)."""
    from rmforge.api import compute_problem

    updates = {k: v for k, v in {"task_runner": task_runner.value if task_runner else None, "workers": workers,
                                 "address": address}.items() if v is not None}
    compute = config.compute.model_copy(update=updates)
    problem = compute_problem(compute, task_runner="--task-runner", address="--cluster-address")
    if problem:
        option, why = problem
        raise typer.BadParameter(why, param_hint=f"'{option}'")
    return compute


# ------------------------------------------------------------------ output


def say(text: str) -> None:
    """Plain text on stdout: no wrapping, no syntax colouring of numbers and paths."""
    console.print(text, highlight=False, soft_wrap=True)


def report(summary: dict[str, Any], json_output: bool, lines: list[str]) -> None:
    """The command's closing words: JSON for machines, or what changed and what next."""
    if json_output:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return
    for line in lines:
        say(line)


def counted(n: int, noun: str, plural: Optional[str] = None) -> str:
    """`1 row`, `2 rows`: a count with its noun, singular or plural (default: noun + "s")."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


# Summary keys whose plural noun is not the last word.
_SINGULAR_KEYS = {"outcomes_decided": "outcome decided"}


def _counted_key(n: Any, key: str) -> str:
    """A summary count under its key: `step_labels` 1 -> `1 step label`; keys that are no
    plural noun (`agreed`, `excluded`) stay as they are."""
    words = key.replace("_", " ")
    if n == 1:
        if key in _SINGULAR_KEYS:
            return f"{n} {_SINGULAR_KEYS[key]}"
        if words.endswith("s") and not words.endswith("ss"):
            return f"{n} {words[:-1]}"
    return f"{n} {words}"


def _counts(values: dict[str, Any]) -> str:
    return ", ".join(_counted_key(v, k) for k, v in values.items() if not isinstance(v, dict))


def _given_db(db: Optional[str]) -> Optional[str]:
    """The --db the user typed, None when it was left out (or came from $RMFORGE_DB, which the
    next command reads too)."""
    import click

    context = click.get_current_context(silent=True)
    if db is None or context is None:
        return db
    source = context.get_parameter_source("db")
    return db if source in (None, click.core.ParameterSource.COMMANDLINE) else None


def _next_command(command: str, db: Optional[str]) -> str:
    """A command to run next, with the --db the user gave (and only then)."""
    import shlex

    return f"{command} --db {shlex.quote(db)}" if db else command


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
            details = f" ({_counts(written)})" if written else ""
            lines.append(f"  {name}: {counted(result['rollouts'], 'rollout')} labelled{details}")
    return lines


def _curate_lines(summary: dict[str, Any]) -> list[str]:
    lines = _resumed_lines(summary)
    for stage, values in _per_stage(summary).items():
        if stage == "report":
            continue
        lines.append(f"  {stage}: {_counts(values)}")
        # Why rollouts gave no process example (tasks/datasets.py), one reason a line: the README
        # sends users here to read them.
        lines += [f"    no process example: {n} {reason}"
                  for reason, n in (values.get("no_process_example") or {}).items()]
    if "report" in summary:
        lines.append(f"  report: {summary['report']['chart']} (rmforge report {summary['report']['run_id'][:8]})")
    return lines


# ------------------------------------------------------------------ commands


@app.command()
def run(
    config_file: Optional[Path] = ConfigOption,
    db: Optional[str] = DbOption,
    problems: Optional[int] = typer.Option(None, "--problems", min=1, help="How many problems."),
    samples: Optional[int] = typer.Option(None, "--samples", min=1, help="Rollouts per problem."),
    source: Optional[Source] = typer.Option(None, help="Where problems come from."),
    problems_path: Optional[str] = typer.Option(None, "--problems-path", help="File or HF dataset for file/hf."),
    annotators: Optional[str] = typer.Option(None, help="Comma-separated annotator names (see `rmforge annotators`)."),
    backend: Optional[Backend] = typer.Option(None, help="vllm: engine in this process; openai: a server."),
    model: Optional[str] = typer.Option(None, help="Model folder, hub id, or served model name."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL (backend openai); several, "
                                           "comma-separated, share the requests."),
    max_tokens: Optional[int] = typer.Option(None, min=1, help="Max new tokens per rollout."),
    seed: Optional[int] = typer.Option(None, help="Problem generator seed."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rollouts per batch."),
    export_dir: Optional[Path] = typer.Option(None, "--export", help="Also export datasets here."),
    task_runner: Optional[TaskRunner] = TaskRunnerOption,
    workers: Optional[int] = WorkersOption,
    cluster_address: Optional[str] = ClusterAddressOption,
    json_output: bool = JsonOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the effective configuration (YAML: the config "
                                 "file, the flags and every default) and exit without running."),
) -> None:
    """Run the whole pipeline: problems -> rollouts -> labels -> curated datasets."""
    from rmforge import api

    config = api.load_config(config_file)
    config = config.model_copy(update={"compute": compute_options(config, task_runner, workers, cluster_address)})
    updates: dict[str, Any] = {}
    problem_updates = {k: v for k, v in {"count": problems, "kind": source.value if source else None,
                                         "path": problems_path, "seed": seed}.items() if v is not None}
    if problem_updates:
        updates["problems"] = config.problems.model_copy(update=problem_updates)
    sampling_updates = {k: v for k, v in {"n": samples, "max_tokens": max_tokens}.items() if v is not None}
    if sampling_updates:
        updates["sampling"] = config.sampling.model_copy(update=sampling_updates)
    servers = api.as_list(base_url) if base_url else []  # several: data-parallel (generator.base_urls)
    generator_updates = {k: v for k, v in {"backend": backend.value if backend else None, "model": model,
                                           "base_url": servers[0] if len(servers) == 1 else None,
                                           "base_urls": servers if len(servers) > 1 else None}.items()
                         if v is not None}
    if generator_updates:
        updates["generator"] = config.generator.model_copy(update=generator_updates)
    if annotators is not None:
        updates["annotators"] = api.as_list(annotators)
    if batch_size is not None:
        updates["batch_size"] = batch_size
    try:
        config = PipelineConfig.model_validate(config.model_copy(update=updates).model_dump())
    except ValidationError as exc:
        raise UserError(api.validation_message(exc)) from None
    api.check_annotators(config.annotators, config.annotator_options, option="--annotators", config_file=config_file)
    if export_dir is not None:
        api.check_folder(export_dir, "--export")
    if dry_run:
        from rmforge.store import resolve_store

        effective = {"store": str(resolve_store(db)), "export_dir": str(export_dir) if export_dir else None,
                     **api.effective_config(config)}
        sys.stdout.write(yaml.safe_dump(effective, sort_keys=False, allow_unicode=True))
        return

    result = api.run(config, db=db, export=export_dir)
    summary, path = result.summary, result.db
    generated = summary["generate"]
    lines = [
        f"Generated {counted(generated['new_rollouts'], 'rollout')} for {counted(generated['problems'], 'problem')} "
        f"({counted(generated['new_steps'], 'step')}).",
        "Labelled:", *_annotate_lines(summary["annotate"]),
        "Curated:", *_curate_lines(summary["curate"]),
        f"Data: {path}",
    ]
    lines.append(f"Exported to {export_dir}/" if export_dir else
                 "Next: " + _next_command("rmforge export --out data/exports", _given_db(db)))
    lines.append("Query: " + _next_command('rmforge sql "SELECT * FROM process_examples LIMIT 5"', _given_db(db)))
    report(summary, json_output, lines)


@import_app.command("rollouts")
def import_rollouts(
    file: Path = typer.Argument(..., help="JSONL or Parquet: problem_id, question, gold_answer, response[, model]."),
    db: Optional[str] = DbOption,
    json_output: bool = JsonOption,
) -> None:
    """Import rollouts from JSONL/Parquet and split them into steps."""
    from rmforge import api

    result = api.import_rollouts(file, db=db)
    report(result.summary, json_output, _rollout_import_lines(result.summary, result.db, _given_db(db)))


def _rollout_import_lines(summary: dict[str, Any], path: str, db: Optional[str] = None) -> list[str]:
    return [f"Imported {counted(summary['rollouts'], 'new rollout')} and {counted(summary['problems'], 'new problem')} "
            f"({counted(summary['new_steps'], 'step')}) from {counted(summary['rows_read'], 'row')} into {path}.",
            *_repeat_and_quarantine_lines(summary, "row"),
            "Next: " + _next_command("rmforge annotate --annotator answer,z3_arith", db)]


def _repeat_and_quarantine_lines(summary: dict[str, Any], row: str) -> list[str]:
    """The rows of an import that added nothing, one line per kind: the new rows alone do not add
    up to the rows read."""
    lines = []
    if summary["identical_repeats"]:
        repeats = summary["identical_repeats"]
        lines.append(f"{counted(repeats, row)} {'repeats' if repeats == 1 else 'repeat'} a rollout already read "
                     "or stored (identical, not imported again)")
    if summary["quarantined"]:
        lines.append(f"{counted(summary['quarantined'], row)} quarantined: "
                     'rmforge sql "SELECT record_ref, field, reason FROM quarantine"')
    return lines


@app.command()
def annotate(
    annotator: str = typer.Option(..., "--annotator", "--annotators",
                                  help="NAME[,NAME...] (see `rmforge annotators`)."),
    db: Optional[str] = DbOption,
    config_file: Optional[Path] = ConfigOption,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rollouts per task."),
    task_runner: Optional[TaskRunner] = TaskRunnerOption,
    workers: Optional[int] = WorkersOption,
    cluster_address: Optional[str] = ClusterAddressOption,
    retry_errors: bool = typer.Option(False, "--retry-errors",
                                      help="Also relabel rollouts labelled unknown for an annotator error."),
    json_output: bool = JsonOption,
) -> None:
    """Label the stored rollouts with the named annotators (only what is not labelled yet)."""
    from rmforge import api

    config = api.load_config(config_file)
    compute = compute_options(config, task_runner, workers, cluster_address)
    names = api.check_annotators(api.as_list(annotator), config.annotator_options, option="--annotator",
                                 config_file=config_file)
    config = config.model_copy(update={"compute": compute, "batch_size": batch_size or config.batch_size})
    result = api.annotate(names, db=db, config=config, retry_errors=retry_errors)
    summary, path = result.summary, result.db
    report(summary, json_output, ["Labelled:", *_annotate_lines(summary), f"Data: {path}",
                                  "Next: " + _next_command(f"rmforge curate --annotators {','.join(names)}",
                                                           _given_db(db))])
    if all(s.get("status") == "unavailable" for s in _per_stage(summary).values()):
        raise typer.Exit(code=2)


@app.command()
def curate(
    db: Optional[str] = DbOption,
    annotators: Optional[str] = typer.Option(None, help="Annotators that vote (default: the config's)."),
    config_file: Optional[Path] = ConfigOption,
    decontaminate: Optional[list[str]] = typer.Option(
        None, "--decontaminate", help="Evaluation set (JSON/JSONL/Parquet, HF dataset folder or id) whose "
        "problems are dropped; repeatable, added to the config's curation.decontaminate."),
    json_output: bool = JsonOption,
) -> None:
    """Rebuild consensus, decontamination, deduplication and the curated datasets."""
    from rmforge import api

    config = api.load_config(config_file)
    names = api.check_annotators(api.as_list(annotators) if annotators is not None else config.annotators,
                                 option="--annotators")
    eval_sets = api.check_eval_sets(decontaminate or [], option="--decontaminate")
    result = api.curate(names, db=db, config=config, decontaminate=eval_sets)
    summary, path = result.summary, result.db
    report(summary, json_output, ["Curated:", *_curate_lines(summary), f"Data: {path}",
                                  "Next: " + _next_command("rmforge export --out data/exports", _given_db(db))])


@app.command()
def export(
    db: Optional[str] = DbOption,
    out: Path = typer.Option(Path("data/exports"), help="Output folder."),
    datasets: Optional[str] = typer.Option(None, help="Comma-separated subset (default all)."),
    dataset_format: Optional[DatasetFormat] = typer.Option(  # type: ignore[valid-type]
        None, "--format", help="standard: text prompts and completions (default); conversational: TRL's chat "
        "messages, with the generator's system prompt."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", metavar="REPO",
                                              help="Also push to this Hub dataset repo (user/name)."),
    private: bool = typer.Option(False, "--private", help="Create the Hub repo private."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON PipelineConfig whose `export` "
                                               "section holds the card's license, language and name."),
    json_output: bool = JsonOption,
) -> None:
    """Export curated datasets (Parquet, JSONL, HF datasets) with a dataset card; optionally push them."""
    from rmforge import api

    names = api.check_datasets(api.as_list(datasets) if datasets is not None else None, option="--datasets")
    api.check_folder(out, "--out")
    settings = api.export_settings(config_file, format=dataset_format.value if dataset_format else None,
                                   push_to_hub=push_to_hub, private=private)
    if settings.private and not settings.push_to_hub:
        raise UserError("--private: only with --push-to-hub (or export.push_to_hub in the config)")
    summary = api.export(db=db, out=out, datasets=names, config=config_file, format=settings.format,
                         push_to_hub=settings.push_to_hub, private=settings.private).summary
    exported = [f"  {name}: {_counts(stats)}" for name, stats in summary.items() if isinstance(stats, dict)]
    lines = ["Exported:", *exported,
             f"Files: {out}/ (dataset card: {out}/README.md)",
             f"Load: datasets.load_from_disk('{out}/hf/process') or the Parquet/JSONL files"]
    if "hub_commit" in summary:
        lines.append(f"Pushed to the Hub: {settings.push_to_hub} ({summary['hub_commit']})")
    report(summary, json_output, lines)


def _cell(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return "" if value is None else str(value)


def _read_only_store(db: Optional[str]) -> Any:
    """The store opened read-only, with DuckDB's file access switched off: a query can
    read the store's tables and nothing else (no COPY TO, read_csv, ATTACH, INSTALL)."""
    from rmforge.api import existing_store
    from rmforge.store import Store

    store = Store(existing_store(db), read_only=True)
    if store.location.lake_data_path:  # the lake's own Parquet folder stays readable, nothing else
        store.execute("SET allowed_directories = [?]", [store.location.lake_data_path])
    # DuckDB keeps its spill folder (`<db>.tmp/`) open to queries even with external access
    # off, so COPY TO and read_csv could use it; without spilling there is no such folder.
    store.execute("SET temp_directory = ''")
    store.execute("SET enable_external_access = false")
    store.execute("SET lock_configuration = true")
    return store


@app.command()
def sql(
    query: str = typer.Argument(..., help="One SQL statement; the store is opened read-only."),
    db: Optional[str] = DbOption,
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format."),
    max_width: int = typer.Option(60, min=1, help="Truncate table cells to this many characters."),
) -> None:
    """Run a read-only SQL query against the store and print the result."""
    if not query.strip():
        raise UserError("empty query")
    with _read_only_store(db) as store:
        try:
            relation = store.con.sql(query)
            result = relation.to_arrow_table() if relation is not None else None
        except Exception as exc:  # duckdb's errors carry the useful message; its types live in rmforge.store
            raise UserError(str(exc)) from None
    if result is None:
        raise UserError("the statement returned no rows; `rmforge sql` is for queries")
    rows = result.to_pylist()
    if format is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, default=str, ensure_ascii=False, indent=2) + "\n")
    elif format is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(result.column_names)
        writer.writerows([_cell(row[c]) for c in result.column_names] for row in rows)
        sys.stdout.write(buffer.getvalue())
    else:
        # Cells are Text, never Rich markup: `[true, false]` or LaTeX `\[x\]` must show as they are.
        table = Table(caption=counted(len(rows), "row"))
        for name in result.column_names:
            table.add_column(Text(name))
        for row in rows:
            table.add_row(*[Text(_cell(row[c])[:max_width]) for c in result.column_names])
        console.print(table)


def _labelled_lines(summary: dict[str, Any], path: str, db: Optional[str] = None) -> list[str]:
    lines = [f"Imported {counted(summary['rollouts'], 'new rollout')} ({counted(summary['new_steps'], 'step')}) "
             f"with {counted(summary['human_step_labels'], 'human step label')} and "
             f"{counted(summary['human_outcome_labels'], 'human final-answer label')} "
             f"from {counted(summary['rows_read'], 'record')} into {path}.",
             *_repeat_and_quarantine_lines(summary, "record")]
    lines.append(f"Next: {_next_command('rmforge annotate --annotator answer,z3_arith', db)}, "
                 f"then {_next_command('rmforge curate', db)}")
    return lines


@import_app.command("processbench")
def import_processbench(
    file: Path = typer.Argument(..., help="ProcessBench JSON/JSONL: id, generator, problem, steps, label."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="JSON {id: gold answer} (default: FILE_gold_answers.json beside it)."),
    db: Optional[str] = DbOption,
    json_output: bool = JsonOption,
) -> None:
    """Import ProcessBench solutions: exact steps, and the human first-error label as annotator `human`."""
    from rmforge.api import input_file, records_file, refuse_if_nothing_imported, running_flows, writable_store

    source = records_file(file)
    gold_path = input_file(gold, "a JSON object of gold answers") if gold else None
    path = writable_store(db)
    with running_flows():
        from rmforge.flows.import_labelled import import_labelled

        summary = import_labelled(source, path, "processbench", gold_path)
    refuse_if_nothing_imported(summary, file, "records")
    report(summary, json_output, _labelled_lines(summary, path, _given_db(db)))


class NeutralRating(str, Enum):
    correct = "correct"
    incorrect = "incorrect"
    unknown = "unknown"


@import_app.command("prm800k")
def import_prm800k(
    file: Path = typer.Argument(..., help="PRM800K-style JSONL (question, label.steps[].completions[].rating)."),
    neutral: NeutralRating = typer.Option(NeutralRating.correct, help="Verdict for a neutral (0) rating."),
    db: Optional[str] = DbOption,
    json_output: bool = JsonOption,
) -> None:
    """Import PRM800K-style rated solutions: the chosen step per turn, ratings as annotator `human`."""
    from rmforge.api import records_file, refuse_if_nothing_imported, running_flows, writable_store

    source = records_file(file)
    path = writable_store(db)
    with running_flows():
        from rmforge.flows.import_labelled import import_labelled

        summary = import_labelled(source, path, "prm800k", None, neutral.value)
    refuse_if_nothing_imported(summary, file, "records")
    report(summary, json_output, _labelled_lines(summary, path, _given_db(db)))


def _score(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


@app.command("eval")
def evaluate(
    file: Path = typer.Argument(..., help="Human-labelled solutions in ProcessBench format."),
    annotators: str = typer.Option(..., "--annotators", "--annotator", help="NAME[,NAME...] to evaluate."),
    policies: Optional[str] = typer.Option(None, help="Consensus policies to score, comma-separated (default: all)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default data/eval/<file stem>)."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="JSON {id: gold answer} (default: FILE_gold_answers.json)."),
    config_file: Optional[Path] = ConfigOption,
    db: Optional[str] = typer.Option(None, "--db", help="Store to use (default: a fresh one in the report folder)."),
    json_output: bool = typer.Option(False, "--json", help="Print the scores as JSON on stdout (nothing else)."),
) -> None:
    """Score annotators and consensus policies against human labels (ProcessBench format)."""
    from rmforge import api

    config = api.load_config(config_file)
    names = api.check_annotators(api.as_list(annotators), config.annotator_options, option="--annotators",
                                 config_file=config_file)
    chosen = api.check_policies(api.as_list(policies) if policies else None, option="--policies")
    if out is not None:
        api.check_folder(out, "--out")
    evaluation = api.evaluate(file, names, policies=chosen, out=out, gold=gold, config=config, db=db)
    result = {"scores": evaluation.scores, "files": evaluation.files}
    if json_output:
        report(result, True, [])
        return
    from rmforge.tasks.evaluate import percent

    table = Table("labels from", "F1 %", "err acc", "ok acc", "incorrect prec (n)", "recall", "correct prec (n)",
                  "coverage", "completions", "s", title=f"{file.name} vs human labels")
    for row in result["scores"]:
        table.add_row(row["name"], percent(row["f1"]), _score(row["acc_erroneous"]), _score(row["acc_correct"]),
                      f"{_score(row['incorrect_precision'])} ({row['incorrect_labels']})",
                      _score(row["incorrect_recall"]),
                      f"{_score(row['correct_precision'])} ({row['correct_labels']})", _score(row["coverage"]),
                      _score(row["completions"]), _score(row["seconds"]))
    console.print(table)
    outcome_rows = [row for row in result["scores"] if row["outcomes_decided"] is not None]
    if outcome_rows:
        answers = Table("labels from", "agreement (decided)", "decided", "incorrect prec",
                        title="final answers vs human final_answer_correct")
        for row in outcome_rows:
            answers.add_row(row["name"], _score(row["outcome_agreement"]),
                            f"{row['outcomes_decided']} ({_score(row['outcome_coverage'])})",
                            _score(row["outcome_incorrect_precision"]))
        console.print(answers)
    say(f"Report: {result['files']['report']} (chart {result['files']['chart']}, metrics {result['files']['metrics']})")


@app.command()
def review(
    db: Optional[str] = DbOption,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback unless you say otherwise; "
                                               "off loopback the page needs the printed link's token)."),
    port: int = typer.Option(8765, help="Port to listen on."),
    reviewer: Optional[str] = typer.Option(None, help="Your name on the labels (default: $USER)."),
) -> None:
    """Review step labels in the browser and record your verdicts as `human` labels."""
    import getpass

    from pydantic import ValidationError

    from rmforge.review.app import create_app, serve
    from rmforge.store import StoreBusy, resolve_store

    location = resolve_store(db)
    if not location.exists():
        raise UserError(f"no rmforge database at {location} (run `rmforge run` or `rmforge import` first)")
    name = reviewer or os.environ.get("USER") or getpass.getuser()
    try:
        review_app = create_app(location.url, name, host=host)
    except ValidationError as exc:  # the human annotator's config rejects the name
        raise UserError(f"--reviewer {name!r}: {exc.errors()[0]['msg']}") from None
    except StoreBusy as exc:
        if getattr(exc.__cause__, "user_facing", False):  # a held file: its message, and exit 75
            raise exc.__cause__ from None
        raise UserError(str(exc)) from None
    console.print(f"Reviewing {location} as [bold]{name}[/bold] (Ctrl+C to stop):")
    token = review_app.state.access_token
    if token:
        typer.echo(f"warning: on {host} the page is reachable from other machines; "
                   "anyone with the link below can label as you", err=True)
    # typer.echo, not rich: a link rich wrapped at the terminal's width would not open.
    typer.echo(f"http://{host}:{port}/" + (f"?token={token}" if token else ""))
    serve(review_app, host=host, port=port)


@app.command()
def status(db: Optional[str] = DbOption, runs: int = typer.Option(8, min=1, help="How many recent runs.")) -> None:
    """Rows per table and the last runs with their state."""
    from rmforge.server import read_state

    with _read_only_store(db) as store:
        counts = store.counts()
        # runs_health shows a run whose heartbeat stopped as `crashed`; a store no writer of
        # this version has opened yet lacks the view.
        has_health = store.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'runs_health'")[0][0]
        recent = store.rows(
            f"SELECT run_id, flow, status, started_at, finished_at, summary FROM {'runs_health' if has_health else 'runs'} "
            "ORDER BY started_at DESC LIMIT ?", [runs])
    tables = Table("table", "rows", title=f"Store {store.location}")
    for name, rows in counts.items():
        tables.add_row(name, str(rows))
    console.print(tables)
    history = Table("run", "flow", "status", "started (UTC)", "took", title="Last runs")
    styles = {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan", "crashed": "red"}
    for r in recent:
        took = f"{(r['finished_at'] - r['started_at']).total_seconds():.1f} s" if r["finished_at"] else ""
        history.add_row(r["run_id"][:8], r["flow"], f"[{styles.get(r['status'], '')}]{r['status']}[/]",
                        r["started_at"].strftime("%Y-%m-%d %H:%M:%S"), took)
    console.print(history)
    if any(r["status"] == "crashed" for r in recent):
        say("A crashed run stopped without a word (killed, machine lost); what it wrote is kept. "
            "Run the same command again: it resumes where the crashed run stopped.")
    server = read_state()
    console.print(f"Prefect server: {server.ui_url} (UI)" if server else
                  "Prefect server: none running (`rmforge server start` makes commands start faster)")


@app.command()
def serve(limit: int = typer.Option(1, min=1, help="How many flow runs at once.")) -> None:
    """Serve every deployment of prefect.yaml with its schedule until Ctrl+C (no work pool needed)."""
    from rmforge.server import use_running_server

    if use_running_server() is None:
        raise UserError("rmforge serve needs a Prefect server that outlives it, for the schedules: "
                        "run `rmforge server start` first (or set PREFECT_API_URL)")
    import prefect
    from rmforge.flows.deployments import served_deployments

    deployments = served_deployments()
    say(f"Serving {', '.join(d.name for d in deployments)} (Ctrl+C to stop; the schedules pause).")
    prefect.serve(*deployments, limit=limit, print_starting_message=False)


@app.command("annotators")
def list_annotators() -> None:
    """Every annotator: what it labels, what it needs, and its options."""
    from rmforge.annotators import REGISTRY, annotator_class
    from rmforge.annotators.base import LLMAnnotator

    for name in REGISTRY:
        cls = annotator_class(name)
        evidence = cls.evidence
        labels = []
        if evidence.confirms_steps or evidence.refutes_steps:
            verbs = [v for v, on in (("confirms", evidence.confirms_steps), ("refutes", evidence.refutes_steps)) if on]
            labels.append(f"steps ({' and '.join(verbs)})")
        if evidence.labels_outcomes:
            labels.append("outcomes")
        if evidence.score != "none":
            labels.append(f"score: {evidence.score}")
        needs = []
        # Outcome verifiers grade against the gold answer; MC estimators grade completions against it.
        if (evidence.labels_outcomes and evidence.authority == "verifier") or evidence.score in ("probability",
                                                                                                "advantage"):
            needs.append("gold answer")
        if issubclass(cls, LLMAnnotator):
            needs.append("a model (generator)")
        unavailable = cls().availability()
        line = (f"[bold]{name}[/bold]  labels {', '.join(labels) or 'nothing'}; authority {evidence.authority}; "
                f"needs {', '.join(needs) or 'nothing else'}")
        say(line + (f"; unavailable here: {unavailable}" if unavailable else ""))
        doc = (cls.__doc__ or "").strip().splitlines()
        if doc:
            say(f"  {doc[0]}")
        for field_name, field in cls.Config.model_fields.items():
            default = field.get_default(call_default_factory=True)
            shown = default.model_dump_json() if isinstance(default, BaseModel) else repr(default)
            description = f"  {field.description}" if field.description else ""
            say(f"    {field_name} = {shown}{description}")
    say("Options go in a config file: annotator_options: {NAME: {OPTION: VALUE}}")


@server_app.command("start")
def server_start(port: int = typer.Option(4200, min=1, max=65535, help="Preferred port.")) -> None:
    """Start a Prefect server in the background; later commands use it."""
    from rmforge import server

    state = server.start(port)
    say(f"Prefect server running at {state.ui_url} (pid {state.pid}, log {state.log}).")
    say("rmforge commands use it; other tools: export PREFECT_API_URL=" + state.api_url)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the background Prefect server."""
    from rmforge import server

    state = server.stop()
    say(f"Stopped the Prefect server (pid {state.pid})." if state else "No Prefect server was running.")


@server_app.command("status")
def server_status() -> None:
    """Whether the background Prefect server runs, and where."""
    from rmforge import server

    state = server.read_state()
    if os.environ.get("PREFECT_API_URL"):
        say(f"PREFECT_API_URL is set: commands use {os.environ['PREFECT_API_URL']}")
    if state is None:
        console.print("No background Prefect server (start one with `rmforge server start`).")
        raise typer.Exit(code=1)
    answering = "answering" if server.healthy(state.api_url) else "NOT answering"
    say(f"Prefect server {answering} at {state.ui_url} (pid {state.pid}, log {state.log}).")



@app.command("report")
def run_report(
    run_id: str = typer.Argument(..., metavar="RUN", help="A run id, a unique prefix of one, or `last`."),
    db: Optional[str] = DbOption,
    json_output: bool = typer.Option(False, "--json", help="Print the report's numbers as JSON (nothing else)."),
) -> None:
    """A curate or pipeline run's report: annotator agreement, label balance, cost per stage, and its chart."""
    from rmforge.tasks.run_report import AGREEMENT_KEY, REFUTE_ONLY_NOTE, draw_report, report_tables

    with _read_only_store(db) as store:
        if run_id == "last":
            runs = store.rows("SELECT run_id, flow, summary FROM runs WHERE flow IN ('curate', 'pipeline') "
                              "AND status = 'completed' ORDER BY finished_at DESC LIMIT 1")
        else:
            runs = store.rows("SELECT run_id, flow, summary FROM runs WHERE starts_with(run_id, ?) LIMIT 2", [run_id])
    if not runs:
        raise UserError(f"no {'completed curate or pipeline ' if run_id == 'last' else ''}run "
                        f"{'' if run_id == 'last' else repr(run_id) + ' '}in {store.location} (see `rmforge status`)")
    if len(runs) > 1:
        raise UserError(f"run prefix {run_id!r} is ambiguous ({runs[0]['run_id']}, {runs[1]['run_id']}, ...)")
    run = runs[0]
    summary = json.loads(run["summary"])
    numbers = summary.get("report") or summary.get("curate", {}).get("report")
    if not numbers:
        raise UserError(f"run {run['run_id']} ({run['flow']}) has no report: curate and pipeline runs write one")
    if json_output:
        report(numbers, True, [])
        return
    titles = {"agreement": "Annotator agreement on steps both decided", "balance": "Label balance",
              "stages": "Seconds per stage", "completions": "LLM completions per annotator"}
    captions = {"agreement": AGREEMENT_KEY, "balance": "newest label per annotator; consensus over the store",
                "completions": "whole store"}
    for name, rows in report_tables(numbers).items():
        if not rows:
            say(f"{titles[name]}: none")
            continue
        table = Table(title=titles[name], caption=captions.get(name))
        for i, header in enumerate(rows[0]):
            table.add_column(Text(header), no_wrap=i == 0)
        for row in rows:
            table.add_row(*(Text(str(value)) for value in row.values()))
        console.print(table)
    if any(row["refute_only"] for row in numbers["balance"]):
        say(f"{REFUTE_ONLY_NOTE}.")
    chart = Path(numbers["chart"])
    regenerated = not chart.is_file()
    if regenerated:
        draw_report(numbers, chart)
    say(f"Chart: {chart}{' (regenerated)' if regenerated else ''}")


if __name__ == "__main__":
    app()
