"""The review web app (`rmforge review`): `app` serves the pages, `queries` reads the store and saves verdicts."""
