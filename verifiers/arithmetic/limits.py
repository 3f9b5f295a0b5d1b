"""The checker's bounds: how much text, how many digits, how deep, how long.

Every bound turns an input that would be expensive into an `unknown` with its reason
(or, inside one expression, into "not a claim"): nothing the checker reads can make it
run long, use much memory, or recurse past Python's limit.
"""

from __future__ import annotations

import re

DEFAULT_TIMEOUT_MS = 2000  # Z3, per claim
STEP_BUDGET_MS = 5000  # a whole step, Z3 included (at least the Z3 timeout)
MAX_STEP_CHARS = 20_000  # longer steps are not read
MAX_NESTING = 100  # brackets and braces nested deeper: the step is not read
MAX_NUMBER_CHARS = 100  # a longer number (digits and separators) is not a number to check
MAX_CLAUSE_TOKENS = 400  # a longer clause with an `=` is not read
MAX_EXPONENT = 1000  # |n| in a^n; beyond it the claim is unknown
MAX_RESULT_BITS = 100_000  # ~30k digits: larger values are not worth computing
MAX_ROOT_INDEX = 64
MAX_Z3_POWER = 64  # powers of irrational values are expanded into products for Z3
MAX_SIDE_TOKENS = 64  # how far left of an `=` a claim's left side may start
MAX_DEPTH = 64  # parser nesting (parentheses, signs, powers)
MAX_LISTED = 5  # claims named in a "correct" reason

_LONG_DIGITS_RE = re.compile(rf"\d{{{MAX_NUMBER_CHARS + 1},}}")
_BRACKETS_RE = re.compile(r"[^(){}\[\]]+")
_DEPTH_STEP = str.maketrans({"(": "+", "{": "+", "[": "+", ")": "-", "}": "-", "]": "-"})


def unread_reason(text: str) -> str | None:
    """Why a step is out of the checker's bounds, or None when it can be read."""
    if len(text) > MAX_STEP_CHARS:
        return f"not checked: the step is longer than {MAX_STEP_CHARS:,} characters"
    if _LONG_DIGITS_RE.search(text):
        return f"not checked: a number longer than {MAX_NUMBER_CHARS} digits"
    if _nesting(text) > MAX_NESTING:
        return f"not checked: brackets nested deeper than {MAX_NESTING}"
    return None


def _nesting(text: str) -> int:
    depth = deepest = 0
    for step in _BRACKETS_RE.sub("", text).translate(_DEPTH_STEP):
        depth = depth + 1 if step == "+" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest
