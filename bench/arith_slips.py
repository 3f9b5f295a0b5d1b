"""Bench: recall of the arithmetic checker on slips planted in correct GSM8K steps.

The steps are ProcessBench's GSM8K solutions where human annotators found no error yet
(every step of a solution labelled -1, the steps before the earliest wrong one
otherwise). In each step where the checker verifies a claim with a whole-number result
(`16 - 3 - 4 = 9`), the result as written after its `=` is changed to a wrong number;
the step must then be flagged `incorrect`. The unchanged steps measure false flags.

Writes bench/reports/arith_slips.md.
Run: PYTHONPATH=. .venv/bin/python bench/arith_slips.py [path/to/gsm8k.json]
(default: $PROCESSBENCH, else ../shared/data/processbench/gsm8k.json beside the checkout).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rmforge.verifiers.arithmetic import Num, check_claim, find_claims, label_step

PROCESSBENCH = Path(
    os.environ.get("PROCESSBENCH", Path(__file__).resolve().parents[2] / "shared/data/processbench/gsm8k.json")
)
SEED = 0
# How a hurried writer gets a result wrong: off by one or two, a digit too many or few.
SLIPS = (lambda v: v + 1, lambda v: v - 1, lambda v: v + 2, lambda v: v * 10, lambda v: v + 10)
REPORT = Path(__file__).parent / "reports" / "arith_slips.md"


def correct_steps(records: list[dict]) -> list[str]:
    """Steps no human annotator found wrong: before the earliest error, or all of them."""
    steps = []
    for record in records:
        end = len(record["steps"]) if record["label"] < 0 else record["label"]
        steps += record["steps"][:end]
    return steps


def plant_slip(step: str, rng: random.Random) -> str | None:
    """The step with one verified whole-number result, as written after its `=`, made
    wrong; None when no verified claim's result can be found in the text."""
    results = [
        claim.rhs.value
        for claim in find_claims(step)
        if isinstance(claim.rhs, Num) and claim.rhs.value.denominator == 1 and check_claim(claim).verdict == "correct"
    ]
    for value in rng.sample(results, len(results)):
        written = [f"{int(value):,}", str(int(value))]
        pattern = r"(=\s*\$?\s*)(" + "|".join(re.escape(w) for w in written) + r")(?![\d.,]\d)"
        spots = list(re.finditer(pattern, step))
        if not spots:
            continue
        spot = rng.choice(spots)
        wrong = rng.choice(SLIPS)(int(value))
        return step[: spot.start(2)] + str(wrong) + step[spot.end(2) :]
    return None


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PROCESSBENCH
    steps = correct_steps(json.loads(path.read_text()))
    rng = random.Random(SEED)
    false_flags = sum(label_step(step)[0] == "incorrect" for step in steps)
    planted = [slipped for step in steps if (slipped := plant_slip(step, rng)) is not None]
    caught = sum(label_step(step)[0] == "incorrect" for step in planted)
    missed = [step for step in planted if label_step(step)[0] != "incorrect"]
    lines = [
        "# Arithmetic slips planted in correct GSM8K steps",
        "",
        f"{len(steps)} steps of ProcessBench GSM8K solutions that human annotators found no error in "
        f"({path.name}); a slip planted in each step with a verified whole-number result (seed {SEED}).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| slips planted | {len(planted)} |",
        f"| slips flagged (recall) | {caught} ({caught / len(planted):.3f}) |",
        f"| unchanged steps flagged (false flags) | {false_flags} of {len(steps)} ({false_flags / len(steps):.4f}) |",
        "",
        "Missed slips (first 10):",
        "",
        *[f"- `{' '.join(step.split())[:160]}`" for step in missed[:10]],
        "",
        "Reproduce: `PYTHONPATH=. .venv/bin/python bench/arith_slips.py`",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
