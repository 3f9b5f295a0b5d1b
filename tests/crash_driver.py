"""Run import -> annotate -> curate through the CLI, SIGKILLing itself at a chosen write.

    python -m tests.crash_driver DB ROLLOUTS CONFIG [STAGE:K]

With STAGE:K the process kills itself (SIGKILL: no cleanup, no except, no atexit)
right after the K-th store write of that stage; K counts every `Store.write` and
`Store.commit`, so a kill lands both between and inside transactions. Without it,
the pipeline runs to the end and prints the number of writes per stage.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from rmforge.cli import app
from rmforge.store import Store

STAGES = {
    "import": lambda db, rollouts, config: ["import", "rollouts", rollouts, "--db", db],
    "annotate": lambda db, rollouts, config: [
        "annotate",
        "--annotator",
        "answer,z3_arith",
        "--db",
        db,
        "--config",
        config,
    ],
    "curate": lambda db, rollouts, config: [
        "curate",
        "--annotators",
        "answer,z3_arith",
        "--db",
        db,
        "--config",
        config,
    ],
}


def main() -> None:
    db, rollouts, config = sys.argv[1:4]
    kill_stage, kill_at = (sys.argv[4].split(":") + [None])[:2] if len(sys.argv) > 4 else (None, None)
    counts = {"stage": None, **{stage: 0 for stage in STAGES}}

    def counted(method):
        def wrapper(self, *args, **kwargs):
            result = method(self, *args, **kwargs)
            stage = counts["stage"]
            counts[stage] += 1
            if stage == kill_stage and counts[stage] == int(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return wrapper

    Store.write = counted(Store.write)
    Store.commit = counted(Store.commit)
    for stage, argv in STAGES.items():
        counts["stage"] = stage
        try:
            app(argv(db, rollouts, config), standalone_mode=False)
        except SystemExit as exit_:
            if exit_.code:
                raise
    print(json.dumps({stage: counts[stage] for stage in STAGES}))


if __name__ == "__main__":
    main()
