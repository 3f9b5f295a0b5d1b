"""rmforge as a library: the command line's commands as functions (`rmforge.run`, `rmforge.annotate`, ...).

Each function takes a config (a `PipelineConfig`, a dict of its fields, or a YAML/JSON file),
checks everything it can before the first flow starts (Prefect takes seconds to start), runs
the stage's Prefect flow and returns what the run did. `rmforge.cli` calls these functions,
so a command and its function run the same way. What the caller must fix raises a
`UserError` with a one-line message; a bad config or argument is a `ConfigError` (also a
ValueError) naming the field.

This module imports neither Prefect nor the flows until a function runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import ValidationError

from rmforge.errors import AnnotatorsUnavailable, ConfigError, UserError
from rmforge.schemas.config import CONSENSUS_POLICIES, ComputeConfig, ExportConfig, PipelineConfig
from rmforge.tasks import store as _store

# What a function takes as its config: the object, a dict of its fields, a YAML/JSON file, or
# None for the defaults (the embedded demo).
ConfigSource = Union[PipelineConfig, Mapping[str, Any], str, os.PathLike, None]
# A store: a DuckDB file or `ducklake:CATALOG;data=FOLDER`; None: $RMFORGE_DB, else data/rmforge.duckdb.
StorePath = Union[str, os.PathLike, None]
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


# ------------------------------------------------------------------ configs


def validation_message(exc: ValidationError) -> str:
    """pydantic's errors in one line, each led by its field's path."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}" for e in exc.errors())


class _UniqueKeyYamlLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping repeating a key (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:  # the keys as written: a `<<` merge may override on purpose
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader reports an unhashable key itself
            if key in first_lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first_lines[key]})", key_node.start_mark)
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _object_without_repeated_keys(s_and_end: tuple[str, int], strict: bool, scan_once: Any, object_hook: Any,
                                  object_pairs_hook: Any, memo: dict) -> tuple[dict[str, Any], int]:
    """json's object parser, refusing a repeated key (json keeps the last one silently) at the
    line of its value: the positions come from the values' scans, the only ones json exposes."""
    text = s_and_end[0]
    value_starts: list[int] = []

    def scan_value(string: str, index: int) -> tuple[Any, int]:
        value_starts.append(index)
        return scan_once(string, index)

    pairs, end = json.decoder.JSONObject(s_and_end, strict, scan_value, None, list, memo)
    first_lines: dict[str, int] = {}
    for (key, _), start in zip(pairs, value_starts):
        line = text.count("\n", 0, start) + 1
        if key in first_lines:
            raise json.JSONDecodeError(f"duplicate key {key!r} (first at line {first_lines[key]})", text, start)
        first_lines[key] = line
    return dict(pairs), end


class _UniqueKeyJsonDecoder(json.JSONDecoder):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parse_object = _object_without_repeated_keys
        # The C scanner ignores parse_object; configs are small, the Python one is fast enough.
        self.scan_once = json.scanner.py_make_scanner(self)


def config_file(config: ConfigSource) -> Path | None:
    """The file a config comes from, for messages about it; None for an object or a dict."""
    return Path(config) if isinstance(config, (str, os.PathLike)) else None


def load_config(config: ConfigSource = None) -> PipelineConfig:
    """A validated PipelineConfig from an object, a dict of its fields or a YAML/JSON file."""
    if config is None:
        return PipelineConfig()
    path = config_file(config)
    if path is not None:
        data, where = _read_config_file(path), str(path)
    elif isinstance(config, PipelineConfig):
        # Validated again: model_copy(update=...) and attribute assignment skip validation.
        data, where = config.model_dump(), "config"
    elif isinstance(config, Mapping):
        data, where = dict(config), "config"
    else:
        raise TypeError(f"config: expected a PipelineConfig, a dict or a file path, got {type(config).__name__}")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {validation_message(exc)}") from exc


def _read_config_file(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} {'is a folder' if path.is_dir() else 'does not exist'}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text, cls=_UniqueKeyJsonDecoder)
        else:
            data = yaml.load(text, Loader=_UniqueKeyYamlLoader)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of PipelineConfig fields, got {type(data).__name__}")
    return data or {}


# ------------------------------------------------------------------ checks
# Messages name a value by `option`: by default the argument of the functions below, a flag
# (`--annotators`) when the command line checks its own options before calling them.


def as_list(value: str | Sequence[str]) -> list[str]:
    """`"a,b"` or `["a", "b"]` -> `["a", "b"]`: one comma-separated string is a list too."""
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    return list(value)


def check_annotators(annotators: list[str], options: dict[str, dict[str, Any]] | None = None, *,
                     option: str = "annotators", config_file: Path | None = None) -> list[str]:
    """Every name known and every option set of a named annotator valid, before any work starts."""
    where = f"{config_file}: " if config_file else ""
    from rmforge.annotators import REGISTRY, annotator_class

    if not annotators:
        raise ConfigError(f"{option}: no annotator named (known: {', '.join(REGISTRY)})")
    unknown = [n for n in annotators if n not in REGISTRY]
    if unknown:
        raise ConfigError(f"{option}: unknown annotator {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(REGISTRY)})")
    for name, values in (options or {}).items():
        if name not in REGISTRY:
            raise ConfigError(f"{where}annotator_options: unknown annotator {name!r} (known: {', '.join(REGISTRY)})")
        if name in annotators:
            try:
                annotator_class(name).Config.model_validate(values or {})
            except ValidationError as exc:
                raise ConfigError(f"{where}annotator_options.{name}: {validation_message(exc)}") from exc
    return annotators


def compute_problem(compute: ComputeConfig, task_runner: str = "compute.task_runner",
                    address: str = "compute.address") -> tuple[str, str] | None:
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
            raise ConfigError(f"{option}: unknown dataset {', '.join(map(repr, unknown)) or '(none named)'} "
                              f"(known: {', '.join(EXPORTS)})")
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
        raise ConfigError(f"{option}: unknown {', '.join(map(repr, unknown)) or 'none given'} "
                          f"(known: {', '.join(CONSENSUS_POLICIES)})")
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
        raise UserError(f"no rmforge database at {location} "
                        "(create one with `rmforge run` or `rmforge import rollouts`)")
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
    from rmforge.problems.records import InputFileError, check_records_file

    source = input_file(file, what)
    try:
        check_records_file(Path(source))
    except InputFileError as exc:
        raise UserError(str(exc)) from None
    return source


def refuse_if_nothing_imported(summary: dict[str, Any], file: str | os.PathLike, rows: str) -> None:
    """A file of another format (rollouts given as ProcessBench, unrelated JSON) has every row
    quarantined: an error, not a summary of zeros followed by the next step."""
    from rmforge.tasks.rollouts import imported_nothing

    if imported_nothing(summary):
        raise UserError(f"{file}: all {summary['rows_read']} {rows} quarantined, nothing was imported "
                        f"(most common reason: {summary.get('top_quarantine_reason')}); is it the right format? "
                        'See: rmforge sql "SELECT record_ref, field, reason FROM quarantine"')


def _refuse_unavailable_annotators(annotators: list[str], options: dict[str, dict[str, Any]] | None) -> None:
    """Nothing could label when every annotator lacks a tool here (e.g. `lean`): say so before Prefect starts."""
    from rmforge.annotators import annotator_class

    reasons = {name: annotator_class(name)((options or {}).get(name)).availability() for name in annotators}
    if all(reasons.values()):
        raise AnnotatorsUnavailable("; ".join(f"{name}: unavailable here ({reason})" for name, reason in reasons.items()))


# ------------------------------------------------------------------ running flows


@contextmanager
def running_flows() -> Iterator[None]:
    """Around flow calls: use a running Prefect server if there is one (else a temporary one
    that ends with this process), show live progress on a terminal, stop engines however the
    call ends, and name a Prefect server that stopped answering as the cause of the error it
    brought. Enter it before importing a flow: it chooses the server Prefect will use."""
    from rmforge.server import bind_temporary_server_to_this_process, raise_if_server_lost, use_running_server

    if use_running_server() is None:
        bind_temporary_server_to_this_process()
    from rmforge.console import Settings, hide_prefect_noise

    hide_prefect_noise()
    Settings.runs_flows = True
    from rmforge.generators import close_generators
    from rmforge.progress import TerminalProgress
    from rmforge.tasks.runs import set_progress_display

    display = TerminalProgress.for_terminal()
    set_progress_display(display)
    try:
        yield
    except Exception as error:
        if not getattr(error, "user_facing", False):  # those name their cause already
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


def run(config: ConfigSource = None, *, db: StorePath = None,
        export: str | os.PathLike | None = None) -> PipelineResult:
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

        summary, run_id = _finished(pipeline(config, path, str(export_dir) if export_dir is not None else None,
                                             return_state=True))
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


def annotate(annotators: str | Sequence[str], *, db: StorePath = None, config: ConfigSource = None,
             retry_errors: bool = False) -> StageResult:
    """Label the stored rollouts with the named annotators (`rmforge annotate`), only what is not
    labelled yet; `retry_errors` also relabels rollouts labelled unknown for an annotator error.
    The config gives the annotators' options, the generator of LLM annotators, batch size and compute."""
    source = config_file(config)
    config = load_config(config)
    chosen = check_annotators(as_list(annotators), config.annotator_options, config_file=source)
    check_compute(config.compute)
    path = existing_store(db)
    _refuse_unavailable_annotators(chosen, config.annotator_options)
    with running_flows():
        from rmforge.flows.annotate import annotate as annotate_flow

        summary, run_id = _finished(annotate_flow(path, chosen, config.annotator_options, config.generator,
                                                  config.batch_size, config.compute, retry_errors,
                                                  return_state=True))
    return StageResult(run_id, path, summary)


def curate(annotators: str | Sequence[str] | None = None, *, db: StorePath = None, config: ConfigSource = None,
           decontaminate: Sequence[str | os.PathLike] = ()) -> CurateResult:
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


def export(*, db: StorePath = None, out: str | os.PathLike = DEFAULT_EXPORT_DIR,
           datasets: str | Sequence[str] | None = None, config: ConfigSource = None, format: str | None = None,
           push_to_hub: str | None = None, private: bool = False) -> ExportResult:
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


def export_settings(config: ConfigSource = None, **overrides: Any) -> ExportConfig:
    """The config's `export` section with the given overrides (None: keep the config's)."""
    settings = load_config(config).export
    try:
        settings = ExportConfig.model_validate(
            {**settings.model_dump(), **{k: v for k, v in overrides.items() if v not in (None, False)}})
    except ValidationError as exc:
        raise ConfigError(f"export: {validation_message(exc)}") from None
    return settings


def effective_config(config: ConfigSource = None) -> dict[str, Any]:
    """The config with every default filled in, each annotator's options included: what a run uses."""
    from rmforge.tasks.annotate import make_annotator

    config = load_config(config)
    options = {}
    for name in config.annotators:
        annotator = make_annotator(name, config.annotator_options.get(name), config.generator)
        options[name] = annotator.config.model_dump(mode="json")
        if "generator" in options[name]:  # None means the pipeline's generator: show the one it will use
            options[name]["generator"] = annotator.generator_config.model_dump(mode="json")
    return {**config.model_dump(mode="json", exclude={"annotator_options"}), "annotator_options": options}


def evaluate(file: str | os.PathLike, annotators: str | Sequence[str], *,
             policies: str | Sequence[str] | None = None, out: str | os.PathLike | None = None,
             gold: str | os.PathLike | None = None, config: ConfigSource = None, db: StorePath = None) -> EvalResult:
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

        result = evaluate_flow(source, chosen, str(out_dir), store, chosen_policies, gold_path,
                               config.annotator_options, config.generator, config.batch_size)
    refuse_if_nothing_imported(result["imported"], file, "records")
    return EvalResult(result["db"], result["scores"], {k: Path(v) for k, v in result["files"].items()},
                      result["imported"])
