"""Split responses into steps.

Modes: `numbered` splits at step markers at line starts; `paragraphs` at blank
lines; `lines` at newlines; `auto` picks numbered when the response has at least two
markers, else paragraphs when it has several, else lines.

Step markers are explicit headings ("Step 3:") or, in a response without any heading,
numbered list items ("3.", "3)"). Where a response has headings, a numbered list
inside a step is part of that step, not a step of its own.

Text before the first marker (a preamble) is kept as its own step. Steps keep the
response's text in order: only the whitespace around them is stripped, and a fragment
shorter than `min_chars` joins the previous step after a newline.
"""

from __future__ import annotations

import re
from itertools import pairwise

from prefect import task
from prefect.cache_policies import NO_CACHE

from rmforge.schemas.config import StepSplitConfig
from rmforge.schemas.records import Rollout, Step
from rmforge.store import Store

_STEP_HEADING = re.compile(r"^[ \t]*(?:[*#]+[ \t]*)?step[ \t]*\d+[ \t]*[:.)\-]", re.I | re.M)
_LIST_ITEM = re.compile(r"^[ \t]*(?:[*#]+[ \t]*)?\d{1,2}[.)][ \t]+(?=\S)", re.M)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")


def _clean(parts: list[str], min_chars: int) -> list[str]:
    steps = [p.strip() for p in parts if p.strip()]
    # Pieces are joined once at the end: appending to a string per fragment is
    # quadratic on a response made of thousands of short lines.
    merged: list[list[str]] = []
    for step in steps:
        if merged and len(step) < min_chars:  # fragments join the previous step
            merged[-1].append(step)
        else:
            merged.append([step])
    return ["\n".join(pieces) for pieces in merged]


def _step_markers(text: str) -> re.Pattern[str]:
    """Headings where the author wrote any, else numbered list items."""
    return _STEP_HEADING if _STEP_HEADING.search(text) else _LIST_ITEM


def split_numbered(text: str) -> list[str]:
    starts = [m.start() for m in _step_markers(text).finditer(text)]
    if not starts:
        return [text]
    bounds = ([0] if starts[0] > 0 else []) + starts + [len(text)]
    return [text[a:b] for a, b in pairwise(bounds)]


def split_steps(text: str, config: StepSplitConfig | None = None) -> list[str]:
    config = config or StepSplitConfig()
    mode = config.mode
    if mode == "auto":
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        if len(_step_markers(text).findall(text)) >= 2:
            mode = "numbered"
        elif len(paragraphs) > 1:
            mode = "paragraphs"
        else:
            mode = "lines"
    if mode == "numbered":
        parts = split_numbered(text)
    elif mode == "paragraphs":
        parts = _PARAGRAPH_BREAK.split(text)
    else:
        parts = text.splitlines()
    return _clean(parts, config.min_chars)


def steps_for(rollouts: list[Rollout], config: StepSplitConfig) -> list[Step]:
    return [
        Step(rollout_id=r.rollout_id, step_index=i, text=text)
        for r in rollouts
        for i, text in enumerate(split_steps(r.response, config))
    ]


@task(name="split-steps", cache_policy=NO_CACHE)
def split_rollout_steps(db: str, config: StepSplitConfig) -> int:
    """Split every rollout that has no steps yet; returns steps added."""
    with Store(db) as store:
        rollouts = store.records(
            Rollout,
            "SELECT * FROM rollouts r WHERE NOT EXISTS (SELECT 1 FROM steps s WHERE s.rollout_id = r.rollout_id)",
        )
        return store.write("steps", steps_for(rollouts, config))
