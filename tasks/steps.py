"""Split responses into steps.

Modes: `numbered` splits at step markers ("Step 3:", "3.", "3)") at line starts;
`paragraphs` at blank lines; `lines` at newlines; `auto` picks numbered when the
response has at least two markers, else paragraphs when it has several, else
lines. Text before the first marker (a preamble) is kept as its own step so the
steps always join back to the whole response.
"""

from __future__ import annotations

import re

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import StepSplitConfig
from schemas.records import Rollout, Step
from tasks.store import Store

_STEP_MARKER = re.compile(
    r"^[ \t]*(?:[*#]+[ \t]*)?(?:step[ \t]*\d+[ \t]*[:.)\-]|\d{1,2}[.)][ \t]+(?=\S))", re.I | re.M
)
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


def split_numbered(text: str) -> list[str]:
    starts = [m.start() for m in _STEP_MARKER.finditer(text)]
    if not starts:
        return [text]
    bounds = ([0] if starts[0] > 0 else []) + starts + [len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def split_steps(text: str, config: StepSplitConfig | None = None) -> list[str]:
    config = config or StepSplitConfig()
    mode = config.mode
    if mode == "auto":
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        if len(_STEP_MARKER.findall(text)) >= 2:
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
            "SELECT * FROM rollouts r WHERE NOT EXISTS "
            "(SELECT 1 FROM steps s WHERE s.rollout_id = r.rollout_id)",
        )
        return store.write("steps", steps_for(rollouts, config))
