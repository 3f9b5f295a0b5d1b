"""Options that several commands share, with choices taken from the config schema (so that
help and validation never drift from it), and the compute flags merged into a config."""

from __future__ import annotations

from enum import Enum
from typing import Any, get_args

import typer
from rich.markup import escape

from rmforge.schemas.config import ComputeConfig, ExportConfig, GeneratorConfig, PipelineConfig, ProblemSourceConfig


def _choices(name: str, field: Any) -> Any:
    return Enum(name, {value: value for value in get_args(field.annotation)}, type=str)


Source = _choices("Source", ProblemSourceConfig.model_fields["kind"])
Backend = _choices("Backend", GeneratorConfig.model_fields["backend"])
TaskRunner = _choices("TaskRunner", ComputeConfig.model_fields["task_runner"])
DatasetFormat = _choices("DatasetFormat", ExportConfig.model_fields["format"])


DbOption = typer.Option(
    None, "--db", envvar="RMFORGE_DB", help="DuckDB file (default data/rmforge.duckdb) or ducklake:CATALOG;data=FOLDER."
)
ConfigOption = typer.Option(None, "--config", help="YAML/JSON PipelineConfig (see data/configs/).")
JsonOption = typer.Option(False, "--json", help="Print the summary as JSON on stdout (nothing else).")
# Help text is Rich markup: `[scale]` would be read as a style tag and vanish.
TaskRunnerOption = typer.Option(
    None, "--task-runner", help="Where annotation batches run (dask/ray: pip install " + escape("'rmforge[scale]').")
)
WorkersOption = typer.Option(
    None, "--workers", min=1, help="Batches labelled at once: threads, or worker processes of a local Dask/Ray cluster."
)
ClusterAddressOption = typer.Option(
    None,
    "--cluster-address",
    help="Use a running cluster: Dask scheduler (tcp://host:8786) or Ray (ray://host:10001, or auto).",
)


def compute_options(
    config: PipelineConfig, task_runner: Any | None, workers: int | None, address: str | None
) -> ComputeConfig:
    """The config's `compute` with the command line's choices; a runner whose package is
    missing here, or an address without a cluster runner, is a usage error of the flag
    (exit 2, like any invalid flag value)."""
    from rmforge.checks import compute_problem

    updates = {
        k: v
        for k, v in {
            "task_runner": task_runner.value if task_runner else None,
            "workers": workers,
            "address": address,
        }.items()
        if v is not None
    }
    compute = config.compute.model_copy(update=updates)
    problem = compute_problem(compute, task_runner="--task-runner", address="--cluster-address")
    if problem:
        option, why = problem
        raise typer.BadParameter(why, param_hint=f"'{option}'")
    return compute
