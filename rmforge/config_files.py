"""Configs as the stages take them: a `PipelineConfig`, a dict of its fields, or a YAML/JSON file,
validated into a `PipelineConfig` (`load_config`) with errors that name the file, line and field;
and what a config becomes for a run: the export settings with their overrides, the effective
config with every default filled in (`rmforge run --dry-run`).

The YAML and JSON readers refuse a mapping that repeats a key (PyYAML and json keep the last
one silently). No Prefect, no flows at import: `import rmforge` stays cheap.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import os
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rmforge.errors import ConfigError
from rmforge.schemas.config import ExportConfig, PipelineConfig

# What a function takes as its config: the object, a dict of its fields, a YAML/JSON file, or
# None for the defaults (the embedded demo).
ConfigSource = PipelineConfig | Mapping[str, Any] | str | os.PathLike | None


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
                    None, None, f"duplicate key {key!r} (first at line {first_lines[key]})", key_node.start_mark
                )
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


# json's pure-Python object parser and scanner: public names in CPython's json.decoder and
# json.scanner, missing from typeshed's stubs of them.
_JSON_OBJECT: Callable[..., tuple[list[tuple[str, Any]], int]] = json.decoder.JSONObject  # type: ignore[attr-defined]
_PY_MAKE_SCANNER: Callable[[json.JSONDecoder], Any] = json.scanner.py_make_scanner  # type: ignore[attr-defined]


def _object_without_repeated_keys(
    s_and_end: tuple[str, int], strict: bool, scan_once: Any, object_hook: Any, object_pairs_hook: Any, memo: dict
) -> tuple[dict[str, Any], int]:
    """json's object parser, refusing a repeated key (json keeps the last one silently) at the
    line of its value: the positions come from the values' scans, the only ones json exposes."""
    text = s_and_end[0]
    value_starts: list[int] = []

    def scan_value(string: str, index: int) -> tuple[Any, int]:
        value_starts.append(index)
        return scan_once(string, index)

    pairs, end = _JSON_OBJECT(s_and_end, strict, scan_value, None, list, memo)
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
        self.scan_once = _PY_MAKE_SCANNER(self)


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


def export_settings(config: ConfigSource = None, **overrides: Any) -> ExportConfig:
    """The config's `export` section with the given overrides (None: keep the config's)."""
    settings = load_config(config).export
    try:
        settings = ExportConfig.model_validate(
            {**settings.model_dump(), **{k: v for k, v in overrides.items() if v not in (None, False)}}
        )
    except ValidationError as exc:
        raise ConfigError(f"export: {validation_message(exc)}") from None
    return settings


def effective_config(config: ConfigSource = None) -> dict[str, Any]:
    """The config with every default filled in, each annotator's options included: what a run uses."""
    from rmforge.annotators.base import LLMAnnotator
    from rmforge.tasks.annotate import make_annotator

    config = load_config(config)
    options = {}
    for name in config.annotators:
        annotator = make_annotator(name, config.annotator_options.get(name), config.generator)
        options[name] = annotator.config.model_dump(mode="json")
        if isinstance(annotator, LLMAnnotator):  # no generator of its own: the pipeline's, shown as such
            options[name]["generator"] = annotator.generator_config.model_dump(mode="json")
    return {**config.model_dump(mode="json", exclude={"annotator_options"}), "annotator_options": options}
