"""Checks of what a stage is given, before any work starts (Prefect takes seconds to start): names
of annotators, datasets and policies, compute settings, output folders, stores and input files.
Each raises a `ConfigError` (a bad argument) or a `UserError` (something to fix first) whose
one-line message names the value by `option`: by default the argument of the Python API's
functions, a flag (`--annotators`) when the command line checks its own options first.

No Prefect, no flows at import: `import rmforge` stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rmforge import store as _store
from rmforge.config_files import validation_message
from rmforge.errors import AnnotatorsUnavailable, ConfigError, UserError
from rmforge.schemas.config import CONSENSUS_POLICIES, ComputeConfig

# A store: a DuckDB file or `ducklake:CATALOG;data=FOLDER`; None: $RMFORGE_DB, else data/rmforge.duckdb.
StorePath = str | os.PathLike | None


def as_list(value: str | Sequence[str]) -> list[str]:
    """`"a,b"` or `["a", "b"]` -> `["a", "b"]`: one comma-separated string is a list too."""
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    return list(value)


def check_annotators(
    annotators: list[str],
    options: dict[str, dict[str, Any]] | None = None,
    *,
    option: str = "annotators",
    config_file: Path | None = None,
) -> list[str]:
    """Every name known and every option set of a named annotator valid, before any work starts."""
    where = f"{config_file}: " if config_file else ""
    from rmforge.annotators import REGISTRY, annotator_class

    if not annotators:
        raise ConfigError(f"{option}: no annotator named (known: {', '.join(REGISTRY)})")
    unknown = [n for n in annotators if n not in REGISTRY]
    if unknown:
        raise ConfigError(f"{option}: unknown annotator {', '.join(map(repr, unknown))} (known: {', '.join(REGISTRY)})")
    for name, values in (options or {}).items():
        if name not in REGISTRY:
            raise ConfigError(f"{where}annotator_options: unknown annotator {name!r} (known: {', '.join(REGISTRY)})")
        if name in annotators:
            try:
                annotator_class(name).Config.model_validate(values or {})
            except ValidationError as exc:
                raise ConfigError(f"{where}annotator_options.{name}: {validation_message(exc)}") from exc
    return annotators


def compute_problem(
    compute: ComputeConfig, task_runner: str = "compute.task_runner", address: str = "compute.address"
) -> tuple[str, str] | None:
    """(the setting at fault, why) when the compute settings cannot run here: an address without a
    cluster runner, or a runner whose package is missing. `task_runner` and `address` name the settings."""
    from rmforge.flows.task_runners import missing_package

    if compute.address and compute.task_runner == "threads":
        return address, f"needs {task_runner} dask or ray"
    package = missing_package(compute.task_runner)
    if package:
        return task_runner, f"{compute.task_runner} needs {package}: pip install 'rmforge[scale]'"
    return None


def check_compute(compute: ComputeConfig) -> None:
    """Compute settings this machine can run."""
    problem = compute_problem(compute)
    if problem:
        raise ConfigError(": ".join(problem))


def check_folder(path: str | os.PathLike, option: str) -> Path:
    """An output folder: new, or a folder; not a file."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option}: {folder} is a file, expected a folder")
    return folder


def check_datasets(datasets: list[str] | None, option: str = "datasets") -> list[str] | None:
    """Export dataset names, each known; None: all of them."""
    from rmforge.schemas.exports import EXPORTS

    if datasets is not None:
        unknown = [n for n in datasets if n not in EXPORTS]
        if unknown or not datasets:
            raise ConfigError(
                f"{option}: unknown dataset {', '.join(map(repr, unknown)) or '(none named)'} "
                f"(known: {', '.join(EXPORTS)})"
            )
    return datasets


def check_eval_sets(sources: Sequence[str | os.PathLike], option: str = "decontaminate") -> list[str]:
    """Evaluation sets for decontamination: a file or folder that exists, or a dataset id (`org/name`)."""
    for source in map(str, sources):
        if not Path(source).exists() and not source.count("/") == 1:
            raise ConfigError(f"{option}: {source} is neither a file or folder nor a dataset id")
    return list(map(str, sources))


def check_policies(policies: list[str] | None, option: str = "policies") -> list[str]:
    """Consensus policies, each known; None: all of them."""
    chosen = list(CONSENSUS_POLICIES) if policies is None else policies
    unknown = [p for p in chosen if p not in CONSENSUS_POLICIES]
    if unknown or not chosen:
        raise ConfigError(
            f"{option}: unknown {', '.join(map(repr, unknown)) or 'none given'} "
            f"(known: {', '.join(CONSENSUS_POLICIES)})"
        )
    return chosen


def writable_store(db: StorePath) -> str:
    """The store to write: any path that is not some other kind of file."""
    location = _store.resolve_store(db)
    _store.check_store_file(location)
    return location.url


def existing_store(db: StorePath) -> str:
    """A store that must exist already (it has something to label, curate or export)."""
    location = _store.resolve_store(db)
    if not location.exists():
        raise UserError(
            f"no rmforge database at {location} (create one with `rmforge run` or `rmforge import rollouts`)"
        )
    _store.check_store_file(location)
    return location.url


def input_file(file: str | os.PathLike, what: str = "a JSON, JSONL or Parquet file") -> str:
    path = Path(file)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give {what}")
    if not path.exists():
        raise UserError(f"{path} does not exist")
    return str(path)


def records_file(file: str | os.PathLike, what: str = "a JSON, JSONL or Parquet file") -> str:
    """An input of records, checked as a whole before any work (empty, unreadable Parquet)."""
    from rmforge.problems.records import check_records_file

    source = input_file(file, what)
    check_records_file(Path(source))  # InputFileError, a UserError, when it cannot be imported
    return source


def refuse_if_nothing_imported(summary: dict[str, Any], file: str | os.PathLike, rows: str) -> None:
    """A file of another format (rollouts given as ProcessBench, unrelated JSON) has every row
    quarantined: an error, not a summary of zeros followed by the next step."""
    from rmforge.tasks.rollouts import imported_nothing

    if imported_nothing(summary):
        raise UserError(
            f"{file}: all {summary['rows_read']} {rows} quarantined, nothing was imported "
            f"(most common reason: {summary.get('top_quarantine_reason')}); is it the right format? "
            'See: rmforge sql "SELECT record_ref, field, reason FROM quarantine"'
        )


def refuse_unavailable_annotators(annotators: list[str], options: dict[str, dict[str, Any]] | None) -> None:
    """Nothing could label when every annotator lacks a tool here (e.g. `lean`): say so before Prefect starts."""
    from rmforge.annotators import annotator_class

    reasons = {name: annotator_class(name)((options or {}).get(name)).availability() for name in annotators}
    if all(reasons.values()):
        raise AnnotatorsUnavailable(
            "; ".join(f"{name}: unavailable here ({reason})" for name, reason in reasons.items())
        )
