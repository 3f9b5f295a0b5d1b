"""Checker libraries the annotators wrap: no Prefect, no I/O beyond what a checker needs (the Lean
checker runs a `lean` binary; the code sandbox runs model-written check programs)."""
