"""Where a flow's batches run: threads of this process, or a Dask or Ray cluster.

`task_runner(compute)` builds the Prefect task runner for a `ComputeConfig`; a flow enters
it for the stretch it fans out (`with task_runner(compute) as runner: runner.submit(...)`),
so the choice is a flow parameter like any other and works the same from the CLI, a
deployment or a pipeline. A local cluster starts with the flow and stops with it (Dask in
a few seconds, Ray in ~10-15 s on 2 cores); `address` reuses a running one.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from rmforge.schemas.config import TASK_RUNNER_PACKAGES, ComputeConfig


def missing_package(kind: str) -> str | None:
    """The pip package `kind` needs and lacks here, else None."""
    package = TASK_RUNNER_PACKAGES.get(kind)
    if package is None or importlib.util.find_spec(package.replace("-", "_")) is not None:
        return None
    return package


def task_runner(compute: ComputeConfig) -> Any:
    """A Prefect task runner (a context manager whose `submit` returns futures)."""
    if compute.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if compute.address:
            return DaskTaskRunner(address=compute.address)
        # One batch at a time per worker process: annotators that are not thread-safe (Z3)
        # stay safe, and `workers` processes use `workers` cores.
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": compute.workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
                "silence_logs": logging.WARNING,
            }
        )
    if compute.task_runner == "ray":
        from prefect_ray import RayTaskRunner

        # Ray runs one task per worker process at a time; num_cpus caps how many run at once.
        # Worker logs stay on the workers (a failed batch still raises here).
        quiet = {"log_to_driver": False}
        if compute.address:
            return RayTaskRunner(address=compute.address, init_kwargs=quiet)
        return RayTaskRunner(init_kwargs={"num_cpus": compute.workers, "include_dashboard": False, **quiet})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=compute.workers)
