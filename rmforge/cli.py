"""The `rmforge` command line: parses arguments and calls flows, nothing more."""

from __future__ import annotations

import os

# Before Prefect is imported: no telemetry from an offline machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from schemas.config import PipelineConfig

app = typer.Typer(help="Synthesize, label and curate data for reward models.", no_args_is_help=True)
import_app = typer.Typer(help="Import existing data.", no_args_is_help=True)
app.add_typer(import_app, name="import")
console = Console()

DbOption = typer.Option(None, "--db", envvar="RMFORGE_DB", help="DuckDB file (default data/rmforge.duckdb).")


def _db(db: Optional[str]) -> str:
    from tasks.store import resolve_db_path

    return str(resolve_db_path(db))


def _close_engines() -> None:
    """Stop engine child processes cleanly instead of at interpreter teardown."""
    from generators import close_generators

    close_generators()


def load_config(path: Optional[Path]) -> PipelineConfig:
    if path is None:
        return PipelineConfig()
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return PipelineConfig.model_validate(data or {})


def _split(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


@app.command()
def run(
    config_file: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON PipelineConfig."),
    db: Optional[str] = DbOption,
    problems: Optional[int] = typer.Option(None, "--problems", help="How many problems."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Rollouts per problem."),
    source: Optional[str] = typer.Option(None, help="arithmetic | logic | file | hf"),
    problems_path: Optional[str] = typer.Option(None, "--problems-path", help="File or HF dataset for file/hf."),
    annotators: Optional[str] = typer.Option(None, help="Comma-separated annotator names."),
    backend: Optional[str] = typer.Option(None, help="vllm | openai"),
    model: Optional[str] = typer.Option(None, help="Model folder, hub id, or served model name."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL (backend openai)."),
    max_tokens: Optional[int] = typer.Option(None, help="Max new tokens per rollout."),
    seed: Optional[int] = typer.Option(None, help="Problem generator seed."),
    export_dir: Optional[str] = typer.Option(None, "--export", help="Also export datasets here."),
) -> None:
    """Run the end-to-end pipeline flow."""
    config = load_config(config_file)
    updates: dict[str, Any] = {}
    problem_updates = {k: v for k, v in
                       {"count": problems, "kind": source, "path": problems_path, "seed": seed}.items() if v is not None}
    if problem_updates:
        updates["problems"] = config.problems.model_copy(update=problem_updates)
    sampling_updates = {k: v for k, v in {"n": samples, "max_tokens": max_tokens}.items() if v is not None}
    if sampling_updates:
        updates["sampling"] = config.sampling.model_copy(update=sampling_updates)
    generator_updates = {k: v for k, v in {"backend": backend, "model": model, "base_url": base_url}.items() if v is not None}
    if generator_updates:
        updates["generator"] = config.generator.model_copy(update=generator_updates)
    if annotators:
        updates["annotators"] = _split(annotators)
    config = PipelineConfig.model_validate(config.model_copy(update=updates).model_dump())

    from flows.pipeline import pipeline

    path = _db(db)
    try:
        summary = pipeline(config, path, export_dir)
    finally:
        _close_engines()
    console.print_json(data=summary)
    console.print(f"\n[bold]Data:[/bold] {path}")
    console.print('Query it: rmforge sql "SELECT * FROM process_examples LIMIT 5"')


@import_app.command("rollouts")
def import_rollouts(file: Path, db: Optional[str] = DbOption) -> None:
    """Import rollouts from JSONL/Parquet (problem_id, question, gold_answer, response[, model])."""
    if not file.exists():
        raise typer.BadParameter(f"{file} does not exist")
    from flows.import_rollouts import import_rollouts as import_flow

    console.print_json(data=import_flow(str(file), _db(db)))


@app.command()
def annotate(
    annotator: str = typer.Option(..., "--annotator", "--annotators", help="NAME[,NAME...]"),
    db: Optional[str] = DbOption,
    config_file: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON PipelineConfig (options, generator)."),
    batch_size: Optional[int] = typer.Option(None, help="Rollouts per task."),
) -> None:
    """Label the stored rollouts with the named annotators (only what is not labelled yet)."""
    config = load_config(config_file)
    from flows.annotate import annotate as annotate_flow

    try:
        summary = annotate_flow(_db(db), _split(annotator), config.annotator_options, config.generator,
                                batch_size or config.batch_size)
    finally:
        _close_engines()
    console.print_json(data=summary)
    if all(s.get("status") == "unavailable" for s in summary.values()):
        raise typer.Exit(code=2)


@app.command()
def curate(
    db: Optional[str] = DbOption,
    annotators: Optional[str] = typer.Option(None, help="Annotators that vote (default: the config's)."),
    config_file: Optional[Path] = typer.Option(None, "--config"),
    decontaminate: Optional[list[str]] = typer.Option(
        None, "--decontaminate", help="Evaluation set (JSON/JSONL/Parquet, HF dataset folder or id) whose "
        "problems are dropped; repeatable, added to the config's curation.decontaminate."),
) -> None:
    """Rebuild consensus, decontamination, deduplication and the curated datasets."""
    config = load_config(config_file)
    curation = config.curation.model_copy(
        update={"decontaminate": config.curation.decontaminate + list(decontaminate or [])})
    from flows.curate import curate as curate_flow

    console.print_json(data=curate_flow(_db(db), _split(annotators) if annotators else config.annotators, curation))


@app.command()
def export(
    db: Optional[str] = DbOption,
    out: Path = typer.Option(Path("data/exports"), help="Output folder."),
    datasets: Optional[str] = typer.Option(None, help="process,preference,kto,critiques (default all)."),
) -> None:
    """Export curated datasets (Parquet, JSONL, HF datasets) with a dataset card."""
    from flows.export import export as export_flow

    console.print_json(data=export_flow(_db(db), str(out), _split(datasets) if datasets else None))
    console.print(f"Written to {out}/ (see {out}/README.md)")


def _cell(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return "" if value is None else str(value)


@app.command()
def sql(
    query: str,
    db: Optional[str] = DbOption,
    format: str = typer.Option("table", "--format", help="table | csv | json"),
    max_width: int = typer.Option(60, help="Truncate table cells to this many characters."),
) -> None:
    """Run a read-only SQL query against the store and print the result."""
    from tasks.store import Store

    if format not in ("table", "csv", "json"):
        raise typer.BadParameter("--format must be table, csv or json")
    try:
        with Store(db, read_only=True) as store:
            result = store.arrow(query)
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=1)
    except Exception as exc:  # duckdb errors carry the useful message
        console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(code=1)
    rows = result.to_pylist()
    if format == "json":
        sys.stdout.write(json.dumps(rows, default=str, ensure_ascii=False, indent=2) + "\n")
    elif format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(result.column_names)
        writer.writerows([_cell(row[c]) for c in result.column_names] for row in rows)
        sys.stdout.write(buffer.getvalue())
    else:
        table = Table(*result.column_names, caption=f"{len(rows)} rows")
        for row in rows:
            table.add_row(*[_cell(row[c])[:max_width] for c in result.column_names])
        console.print(table)


if __name__ == "__main__":
    app()
