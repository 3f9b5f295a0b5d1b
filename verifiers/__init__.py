"""Checker libraries the annotators wrap: pure functions, no Prefect, no I/O."""
