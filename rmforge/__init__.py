"""rmforge: data synthesis and preference curation for reward models.

As a library: `rmforge.run(config, db=..., export=...)`, the stages one at a time
(`generate`, `import_rollouts`, `annotate`, `curate`, `export`, `eval`), `rmforge.Store` for
queries into Arrow and Polars, and the config types (README, "Python API"). These names are
imported on first use, so `import rmforge` stays cheap: Prefect, vLLM and torch load only
when a stage runs.
"""

from pathlib import Path as _Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# An installed rmforge holds its stages as subpackages (rmforge.tasks, rmforge.flows, ...: setuptools
# package-dir). A source checkout keeps them in the repository's top-level folders; when such a
# checkout is imported straight from sys.path (PYTHONPATH, a worktree), its root joins this package's
# search path so that `rmforge.tasks` is that checkout's tasks/ and not another install's.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "tasks" / "__init__.py").is_file():
    __path__.append(str(_checkout))

# Written out, not computed, so that type checkers and linters see what `rmforge` exports.
__all__ = [  # noqa: RUF022 (grouped by what the names are, not sorted)
    "__version__",
    # the stages (rmforge/api.py) and the config loader (rmforge/config_files.py)
    "run",
    "generate",
    "import_rollouts",
    "annotate",
    "curate",
    "export",
    "eval",
    "load_config",
    "Store",
    "StageResult",
    "CurateResult",
    "ExportResult",
    "PipelineResult",
    "EvalResult",
    # what a config holds (schemas/config.py)
    "PipelineConfig",
    "ProblemSourceConfig",
    "GeneratorConfig",
    "SamplingConfig",
    "StepSplitConfig",
    "CurationConfig",
    "ComputeConfig",
    # what the stages raise (rmforge/errors.py; UserError and ConfigError from schemas/errors.py)
    "UserError",
    "ConfigError",
    "AnnotatorsUnavailable",
]

if TYPE_CHECKING:
    from rmforge.api import (
        CurateResult,
        EvalResult,
        ExportResult,
        PipelineResult,
        StageResult,
        Store,
        annotate,
        curate,
        export,
        generate,
        import_rollouts,
        run,
    )
    from rmforge.api import evaluate as eval
    from rmforge.config_files import load_config
    from rmforge.errors import AnnotatorsUnavailable, ConfigError, UserError
    from rmforge.schemas.config import (
        ComputeConfig,
        CurationConfig,
        GeneratorConfig,
        PipelineConfig,
        ProblemSourceConfig,
        SamplingConfig,
        StepSplitConfig,
    )

# Where a name lives when not in rmforge.api; `eval` is api.evaluate (the command's name, which
# only a module attribute can take from the builtin).
_HOMES = {
    **dict.fromkeys(
        [
            "PipelineConfig",
            "ProblemSourceConfig",
            "GeneratorConfig",
            "SamplingConfig",
            "StepSplitConfig",
            "CurationConfig",
            "ComputeConfig",
        ],
        "rmforge.schemas.config",
    ),
    **dict.fromkeys(["UserError", "ConfigError", "AnnotatorsUnavailable"], "rmforge.errors"),
    "load_config": "rmforge.config_files",
}
_RENAMED = {"eval": "evaluate"}


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module 'rmforge' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_HOMES.get(name, "rmforge.api"))
    value = getattr(module, _RENAMED.get(name, name))
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
