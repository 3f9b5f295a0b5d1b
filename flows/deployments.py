"""The deployments of prefect.yaml as served deployments (`rmforge serve`), without `prefect deploy`."""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval

# The repository's top-level prefect.yaml, shipped inside the package (flows/prefect.yaml links to it)
# so that an installed rmforge serves the same deployments as a checkout.
PREFECT_YAML = Path(str(resources.files("rmforge.flows") / "prefect.yaml"))


def load_flow(entrypoint: str) -> Flow:
    """`rmforge.flows.pipeline.pipeline` -> the flow object (a module path: it works without a checkout)."""
    module_name, _, name = entrypoint.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def _schedule(entry: dict[str, Any]) -> Any:
    if "cron" in entry:
        return Cron(entry["cron"], timezone=entry.get("timezone"))
    if "interval" in entry:
        return Interval(entry["interval"], timezone=entry.get("timezone"))
    raise ValueError(f"prefect.yaml: schedule {entry!r} has neither cron nor interval")


def served_deployments(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    """One served deployment per entry of prefect.yaml, with its parameters and schedules."""
    spec = yaml.safe_load(path.read_text())
    deployments = []
    for entry in spec["deployments"]:
        deployment = load_flow(entry["entrypoint"]).to_deployment(
            name=entry["name"],
            description=entry.get("description"),
            parameters=entry.get("parameters") or {},
            schedules=[_schedule(s) for s in entry.get("schedules") or []],
            tags=entry.get("tags"),
        )
        # Called outside an event loop, Prefect's dispatcher runs the sync version: no coroutine.
        assert isinstance(deployment, RunnerDeployment)
        deployments.append(deployment)
    return deployments
