"""Errors that speak to the user, raised by the Python API and the command line alike: the
public names (`rmforge.UserError`, ...).

`UserError` and `ConfigError` live in the bottom layer (`rmforge.schemas.errors`), where every
package can raise them; the subclasses only the API raises live here. No imports beyond that
module: `rmforge.api` and `rmforge.console` both use these without pulling in each other.
"""

from __future__ import annotations

from rmforge.schemas.errors import ConfigError, UserError

__all__ = ["AnnotatorsUnavailable", "ConfigError", "UserError"]


class AnnotatorsUnavailable(UserError):
    """None of the annotators asked for can run on this machine (a missing tool, e.g. `lean`)."""

    exit_code = 2
