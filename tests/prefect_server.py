"""A Prefect server for tests that run rmforge or Prefect as real processes: started once,
shared, stopped at the end (the CLI's own `rmforge server start` machinery)."""

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


@contextmanager
def running_prefect_server(folder: Path) -> Iterator[str]:
    """The API URL of a fresh server with its database under `folder`; skips if it cannot start."""
    from rmforge import server
    from rmforge.console import UserError

    with pytest.MonkeyPatch.context() as env:
        env.setenv("RMFORGE_STATE_DIR", str(folder))
        env.setenv("PREFECT_HOME", str(folder / "prefect-home"))
        env.delenv("PREFECT_API_URL", raising=False)
        try:
            state = server.start(port=0)
        except UserError as exc:
            pytest.skip(f"the Prefect server cannot start here: {exc}")
        try:
            yield state.api_url
        finally:
            server.stop()
