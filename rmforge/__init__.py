"""rmforge: data synthesis and preference curation for reward models."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# An installed rmforge holds its stages as subpackages (rmforge.tasks, rmforge.flows, ...: setuptools
# package-dir). A source checkout keeps them in the repository's top-level folders; when such a
# checkout is imported straight from sys.path (PYTHONPATH, a worktree), its root joins this package's
# search path so that `rmforge.tasks` is that checkout's tasks/ and not another install's.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "tasks" / "__init__.py").is_file():
    __path__.append(str(_checkout))
