"""Imports flow one way: rmforge (CLI, API, review app) -> flows -> tasks -> exports -> annotators,
problems -> store, verifiers, generators, curation -> schemas.

Every module of the package (each folder that pyproject.toml maps to an `rmforge` subpackage) is
parsed, and each of its imports, a lazy one inside a function included, must point at its own
layer or one the table below allows. Imports are absolute and name the `rmforge` package: never a
checkout's bare folder (`from tasks import ...`), which an installed rmforge does not have.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

BELOW_TASKS = {"exports", "annotators", "problems", "store", "verifiers", "generators", "curation", "schemas"}
# What each layer may import besides itself; `rmforge` (rmforge/: the CLI, the API, the review
# app) is the top and may import any.
MAY_IMPORT: dict[str, set[str]] = {
    "schemas": set(),
    "verifiers": {"schemas"},
    "generators": {"schemas"},
    "store": {"schemas"},
    "curation": {"schemas"},
    "problems": {"verifiers", "generators", "schemas"},
    "annotators": {"store", "verifiers", "generators", "schemas"},
    "exports": {"annotators", "store", "verifiers", "generators", "schemas"},
    "tasks": BELOW_TASKS,
    "flows": {"tasks"} | BELOW_TASKS,
}
LAYERS = set(MAY_IMPORT)


def layer_of(module: str) -> str | None:
    """The layer of an absolute module name; None for a module outside rmforge."""
    parts = module.split(".")
    if parts[0] != "rmforge":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "rmforge"


def imported_modules(node: ast.AST) -> list[str]:
    """The modules an import statement names (`from rmforge import api` names rmforge.api)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    return [f"{node.module}.{alias.name}" for alias in node.names] if node.module == "rmforge" else [node.module]


def violations(root: Path, package_dirs: dict[str, str]) -> list[str]:
    """'file:line: what is wrong' for every import that breaks the layering."""
    found = []
    for package, folder in package_dirs.items():
        layer = package.split(".")[1] if "." in package else "rmforge"
        allowed = {layer} | MAY_IMPORT.get(layer, LAYERS | {"rmforge"})
        for path in sorted((root / folder).rglob("*.py")):
            where = path.relative_to(root)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                if isinstance(node, ast.ImportFrom) and node.level:
                    found.append(f"{where}:{node.lineno}: a relative import (imports are absolute)")
                    continue
                for module in imported_modules(node):
                    top = module.split(".")[0]
                    if top in LAYERS:
                        found.append(f"{where}:{node.lineno}: imports the bare folder {module!r} (rmforge.{module})")
                    target = layer_of(module)
                    if target is not None and target not in allowed:
                        found.append(f"{where}:{node.lineno}: {layer} imports {module} ({target})")
    return found


def test_every_folder_of_the_package_has_its_layer():
    layers = {package.split(".")[1] for package in PACKAGE_DIRS if "." in package}
    assert layers == LAYERS, layers ^ LAYERS


def test_imports_flow_one_way():
    assert violations(REPO, PACKAGE_DIRS) == []


def test_an_import_against_the_layering_is_caught(tmp_path):
    planted = {
        "schemas/records.py": "from rmforge.tasks.annotate import annotate_batch\n",
        "verifiers/check.py": "import rmforge.cli\n",
        "store/store.py": "from rmforge.schemas import records\nfrom rmforge.annotators import REGISTRY\n",
        "tasks/export.py": "def later():\n    from rmforge.flows.runs import tracked_run\n",
        "flows/curate.py": "from rmforge import api\nfrom rmforge.tasks import export\n",
        "annotators/human.py": "from tasks.store import Store\n",
        "problems/logic.py": "from .arithmetic import generate\n",
        "rmforge/cli.py": "from rmforge.flows.pipeline import pipeline\nfrom rmforge.store import Store\n",
    }
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(tmp_path, PACKAGE_DIRS)
    assert sorted(found) == [
        "annotators/human.py:1: imports the bare folder 'tasks.store' (rmforge.tasks.store)",
        "flows/curate.py:1: flows imports rmforge.api (rmforge)",
        "problems/logic.py:1: a relative import (imports are absolute)",
        "schemas/records.py:1: schemas imports rmforge.tasks.annotate (tasks)",
        "store/store.py:2: store imports rmforge.annotators (annotators)",
        "tasks/export.py:2: tasks imports rmforge.flows.runs (flows)",
        "verifiers/check.py:1: verifiers imports rmforge.cli (rmforge)",
    ]
