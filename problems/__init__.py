"""Problem generators (arithmetic, FOLIO-style logic), the readers of input records (`records`) and the
importers of problems, rollouts and human-labelled solutions."""
