"""What the commands print: the closing summary (`report`: JSON or lines), counts with their
nouns, tables of plain text, and the command to run next."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console()


def say(text: str) -> None:
    """Plain text on stdout: no wrapping, no syntax colouring of numbers and paths."""
    console.print(text, highlight=False, soft_wrap=True)


def report(summary: dict[str, Any], json_output: bool, lines: list[str]) -> None:
    """The command's closing words: JSON for machines, or what changed and what next."""
    if json_output:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return
    for line in lines:
        say(line)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`1 row`, `2 rows`: a count with its noun, singular or plural (default: noun + "s")."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


# Summary keys whose plural noun is not the last word.
_SINGULAR_KEYS = {"outcomes_decided": "outcome decided"}


def _counted_key(n: Any, key: str) -> str:
    """A summary count under its key: `step_labels` 1 -> `1 step label`; keys that are no
    plural noun (`agreed`, `excluded`) stay as they are."""
    words = key.replace("_", " ")
    if n == 1:
        if key in _SINGULAR_KEYS:
            return f"{n} {_SINGULAR_KEYS[key]}"
        if words.endswith("s") and not words.endswith("ss"):
            return f"{n} {words[:-1]}"
    return f"{n} {words}"


def counted_keys(values: dict[str, Any]) -> str:
    """A summary's counts, each under its key: `1 step label, 2 agreed` (nested parts left out)."""
    return ", ".join(_counted_key(v, k) for k, v in values.items() if not isinstance(v, dict))


def text_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    title: str | None = None,
    caption: str | None = None,
    first_column_no_wrap: bool = False,
) -> Table:
    """A table whose headers and cells are Text, never Rich markup: `[true, false]` or LaTeX
    `\\[x\\]` show as they are."""
    table = Table(title=title, caption=caption)
    for i, name in enumerate(columns):
        table.add_column(Text(name), no_wrap=first_column_no_wrap and i == 0)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def given_db(db: str | None) -> str | None:
    """The --db the user typed, None when it was left out (or came from $RMFORGE_DB, which the
    next command reads too)."""
    import click

    context = click.get_current_context(silent=True)
    if db is None or context is None:
        return db
    source = context.get_parameter_source("db")
    return db if source in (None, click.core.ParameterSource.COMMANDLINE) else None


def next_command(command: str, db: str | None) -> str:
    """A command to run next, with the --db the user gave (and only then)."""
    import shlex

    return f"{command} --db {shlex.quote(db)}" if db else command
