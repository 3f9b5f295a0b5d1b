"""Problem generators (arithmetic, FOLIO-style logic) and importers of problems and rollouts."""
