"""rmforge as a library: the command line's commands as functions (`rmforge.run`, `rmforge.annotate`, ...).

Each function takes a config (a `PipelineConfig`, a dict of its fields, or a YAML/JSON file:
`rmforge.config_files`), checks everything it can before the first flow starts (Prefect takes
seconds to start; the checks are `rmforge.checks`), runs the stage's Prefect flow and returns
what the run did. `rmforge.cli` calls these functions, so a command and its function run the
same way. What the caller must fix raises a `UserError` with a one-line message; a bad config
or argument is a `ConfigError` (also a ValueError) naming the field.

This module imports neither Prefect nor the flows until a function runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmforge import store as _store
from rmforge.checks import (
    StorePath,
    as_list,
    check_annotators,
    check_compute,
    check_datasets,
    check_eval_sets,
    check_folder,
    check_policies,
    existing_store,
    input_file,
    records_file,
    refuse_if_nothing_imported,
    refuse_unavailable_annotators,
    writable_store,
)
from rmforge.config_files import ConfigSource, config_file, export_settings, load_config
from rmforge.errors import ConfigError, UserError

DEFAULT_EXPORT_DIR = Path("data") / "exports"


class Store(_store.Store):
    """The store, for your own queries: `sql` (Arrow), `polars` and `table` (Polars DataFrames).

    Opened read-only unless `read_only=False`, so a query cannot change the store by mistake.
    A DuckDB file takes any number of readers or one writer, and one process cannot hold it
    read-only and for writing at once: close the store (or use `with`) before running a stage.
    """

    def __init__(self, db: StorePath = None, *, read_only: bool = True) -> None:
        super().__init__(db, read_only=read_only)


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class StageResult:
    """What a stage's run did: its id (its row in `runs`), the store, and its summary (what the
    command's `--json` prints)."""

    run_id: str
    db: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class CurateResult(StageResult):
    @property
    def datasets(self) -> dict[str, int]:
        """Rows of each curated dataset: `preference_pairs`, `process_examples`."""
        return _dataset_rows(self.summary)


@dataclass(frozen=True)
class ExportResult(StageResult):
    out: Path

    @property
    def files(self) -> dict[str, Path]:
        """The Parquet file of each exported dataset (JSONL and `hf/NAME/` lie beside it)."""
        return _exported_files(self.out, self.summary)


@dataclass(frozen=True)
class PipelineResult(StageResult):
    export_dir: Path | None

    @property
    def datasets(self) -> dict[str, int]:
        """Rows of each curated dataset: `preference_pairs`, `process_examples`."""
        return _dataset_rows(self.summary["curate"])

    @property
    def files(self) -> dict[str, Path]:
        """The Parquet file of each exported dataset; none without `export`."""
        return _exported_files(self.export_dir, self.summary["export"]) if self.export_dir is not None else {}


@dataclass(frozen=True)
class EvalResult:
    """Scores of each annotator and consensus policy against the human labels, and the report's files."""

    db: str
    scores: list[dict[str, Any]]
    files: dict[str, Path]
    imported: dict[str, Any]


def _dataset_rows(curate_summary: dict[str, Any]) -> dict[str, int]:
    return {name: rows for name, rows in curate_summary["datasets"].items() if isinstance(rows, int)}


def _exported_files(out: Path, export_summary: dict[str, Any]) -> dict[str, Path]:
    return {name: out / f"{name}.parquet" for name, stats in export_summary.items() if isinstance(stats, dict)}


# ------------------------------------------------------------------ running flows


@contextmanager
def running_flows() -> Iterator[None]:
    """Around flow calls: use the configured or running Prefect server, else start one in the
    background that later commands share (RMFORGE_SHARED_SERVER=0: a temporary one that ends
    with this process; see `rmforge.server`), show live progress on a terminal, stop engines however the
    call ends, and name a Prefect server that stopped answering as the cause of the error it
    brought. Enter it before importing a flow: it chooses the server Prefect will use."""
    from rmforge.server import (
        bind_temporary_server_to_this_process,
        kept_alive,
        raise_if_server_lost,
        use_or_start_shared_server,
    )

    server = use_or_start_shared_server()
    if server.api_url is None:
        bind_temporary_server_to_this_process()
    elif server.started_now and server.background is not None:
        print(
            f"Started a Prefect server at {server.background.ui_url} for this and later commands (it stops "
            f"after {server.background.idle_stop} unused; `rmforge server stop` stops it now).",
            file=sys.stderr,
        )
    from prefect.settings import temporary_settings

    from rmforge.console import Settings, hide_prefect_noise

    hide_prefect_noise()
    Settings.runs_flows = True
    from rmforge.flows.progress import set_progress_display
    from rmforge.generators import close_generators
    from rmforge.progress import TerminalProgress

    display = TerminalProgress.for_terminal()
    set_progress_display(display)
    try:
        # Prefect's flow-run heartbeat (for automations that detect crashed runs) ends with a join
        # on a thread that sleeps in 1 s steps: up to 1 s added to every flow. rmforge's runs have a
        # heartbeat of their own in the store (`runs_health`); PREFECT_FLOWS_HEARTBEAT_FREQUENCY
        # set by the user still wins.
        with temporary_settings(set_defaults={"flows.heartbeat_frequency": None}), kept_alive(server):
            yield
    except Exception as error:
        if not isinstance(error, UserError):  # those name their cause already
            raise_if_server_lost(error)
        raise
    finally:
        set_progress_display(None)
        if display is not None:
            display.stop()
        close_generators()


def _finished(state: Any) -> tuple[dict[str, Any], str]:
    """A flow's summary, or its error raised as it was, and its run id (the one `runs` keeps)."""
    return state.result(), str(state.state_details.flow_run_id)


# ------------------------------------------------------------------ the commands


def run(
    config: ConfigSource = None, *, db: StorePath = None, export: str | os.PathLike | None = None
) -> PipelineResult:
    """The whole pipeline (`rmforge run`): problems -> rollouts -> labels -> curated datasets,
    exported into the folder `export` when given."""
    source = config_file(config)
    config = load_config(config)
    check_annotators(config.annotators, config.annotator_options, config_file=source)
    check_compute(config.compute)
    export_dir = check_folder(export, "export") if export is not None else None
    path = writable_store(db)
    with running_flows():
        from rmforge.flows.pipeline import pipeline

        summary, run_id = _finished(
            pipeline(config, path, str(export_dir) if export_dir is not None else None, return_state=True)
        )
    return PipelineResult(run_id, path, summary, export_dir)


def generate(config: ConfigSource = None, *, db: StorePath = None) -> StageResult:
    """Problems and rollouts only (the pipeline's first stage): sampled, split into steps, stored."""
    config = load_config(config)
    path = writable_store(db)
    with running_flows():
        from rmforge.flows.generate import generate as generate_flow

        summary, run_id = _finished(generate_flow(config, path, return_state=True))
    return StageResult(run_id, path, summary)


def import_rollouts(file: str | os.PathLike, *, db: StorePath = None) -> StageResult:
    """Rollouts from a JSONL or Parquet file (`rmforge import rollouts`), split into steps."""
    source = records_file(file, "a JSONL or Parquet file")
    path = writable_store(db)
    with running_flows():
        from rmforge.flows.import_rollouts import import_rollouts as import_flow

        summary, run_id = _finished(import_flow(source, path, return_state=True))
    refuse_if_nothing_imported(summary, file, "rows")
    return StageResult(run_id, path, summary)


def annotate(
    annotators: str | Sequence[str], *, db: StorePath = None, config: ConfigSource = None, retry_errors: bool = False
) -> StageResult:
    """Label the stored rollouts with the named annotators (`rmforge annotate`), only what is not
    labelled yet; `retry_errors` also relabels rollouts labelled unknown for an annotator error.
    The config gives the annotators' options, the generator of LLM annotators, batch size and compute."""
    source = config_file(config)
    config = load_config(config)
    chosen = check_annotators(as_list(annotators), config.annotator_options, config_file=source)
    check_compute(config.compute)
    path = existing_store(db)
    refuse_unavailable_annotators(chosen, config.annotator_options)
    with running_flows():
        from rmforge.flows.annotate import annotate as annotate_flow

        summary, run_id = _finished(
            annotate_flow(
                path,
                chosen,
                config.annotator_options,
                config.generator,
                config.batch_size,
                config.compute,
                retry_errors,
                return_state=True,
            )
        )
    return StageResult(run_id, path, summary)


def curate(
    annotators: str | Sequence[str] | None = None,
    *,
    db: StorePath = None,
    config: ConfigSource = None,
    decontaminate: Sequence[str | os.PathLike] = (),
) -> CurateResult:
    """Rebuild consensus, decontamination, deduplication and the curated datasets (`rmforge curate`).
    `annotators` vote (default: the config's); `decontaminate` adds evaluation sets to the config's."""
    config = load_config(config)
    voters = check_annotators(as_list(annotators) if annotators is not None else config.annotators)
    eval_sets = check_eval_sets(decontaminate)
    curation = config.curation.model_copy(update={"decontaminate": config.curation.decontaminate + eval_sets})
    path = existing_store(db)
    with running_flows():
        from rmforge.flows.curate import curate as curate_flow

        summary, run_id = _finished(curate_flow(path, voters, curation, return_state=True))
    return CurateResult(run_id, path, summary)


def export(
    *,
    db: StorePath = None,
    out: str | os.PathLike = DEFAULT_EXPORT_DIR,
    datasets: str | Sequence[str] | None = None,
    config: ConfigSource = None,
    format: str | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
) -> ExportResult:
    """Write the curated datasets (Parquet, JSONL, HF datasets) with a dataset card into `out`
    (`rmforge export`); `datasets`: a subset of process, preference, kto, critiques. `format`
    (standard | conversational), `push_to_hub` (a Hub dataset repo, user/name) and `private`
    override the config's `export` section (the card's license, language and name)."""
    from rmforge.exports.files import check_export
    from rmforge.tasks.hub import check_push

    chosen = check_datasets(as_list(datasets) if datasets is not None else None)
    out_dir = check_folder(out, "out")
    settings = export_settings(config, format=format, push_to_hub=push_to_hub, private=private)
    if settings.private and not settings.push_to_hub:
        raise ConfigError("private: only with push_to_hub (a Hub repo to create private)")
    path = existing_store(db)
    check_export(path, out_dir, chosen)  # the flow checks again; here it fails before Prefect starts
    if settings.push_to_hub:
        check_push(settings.push_to_hub)
    with running_flows():
        from rmforge.flows.export import export as export_flow

        summary, run_id = _finished(export_flow(path, str(out_dir), chosen, settings, return_state=True))
    return ExportResult(run_id, path, summary, out_dir)


def evaluate(
    file: str | os.PathLike,
    annotators: str | Sequence[str],
    *,
    policies: str | Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    gold: str | os.PathLike | None = None,
    config: ConfigSource = None,
    db: StorePath = None,
) -> EvalResult:
    """Score annotators and consensus policies against human labels in ProcessBench format
    (`rmforge eval`). The report goes to `out` (default data/eval/<file stem>); without `db`
    the file is imported into a fresh store there. `gold`: JSON {id: gold answer} (default:
    FILE_gold_answers.json beside the file)."""
    source = records_file(file)
    gold_path = input_file(gold, "a JSON object of gold answers") if gold else None
    config_path = config_file(config)
    config = load_config(config)
    chosen = check_annotators(as_list(annotators), config.annotator_options, config_file=config_path)
    chosen_policies = check_policies(as_list(policies) if policies is not None else None)
    out_dir = check_folder(out or Path("data") / "eval" / Path(file).stem, "out")
    store = writable_store(db) if db is not None else None
    if store is None and (out_dir / "eval.duckdb").exists():
        (out_dir / "eval.duckdb").unlink()  # a fresh store: the report is about this file only
    with running_flows():
        from rmforge.flows.evaluate import evaluate as evaluate_flow

        result = evaluate_flow(
            source,
            chosen,
            str(out_dir),
            store,
            chosen_policies,
            gold_path,
            config.annotator_options,
            config.generator,
            config.batch_size,
        )
    refuse_if_nothing_imported(result["imported"], file, "records")
    return EvalResult(
        result["db"], result["scores"], {k: Path(v) for k, v in result["files"].items()}, result["imported"]
    )
