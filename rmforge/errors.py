"""Errors that speak to the user, raised by the Python API and the command line alike.

No imports: `rmforge.api` and `rmforge.console` both use these without pulling in each other.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for; the message says what to fix in one line (the
    command line shows it without a traceback and exits with `exit_code`)."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A config or argument that is not valid; the message names the field or argument."""


class AnnotatorsUnavailable(UserError):
    """None of the annotators asked for can run on this machine (a missing tool, e.g. `lean`)."""

    exit_code = 2
