"""The one error type that speaks to the user, and its subclasses a caller may tell apart.

In the bottom layer, so that every package raises it (a store that is busy, an input file that
cannot be imported, an export folder that cannot be written, a bad config) and the command
line catches one type: it prints the message as one `error:` line on stderr and exits with
`exit_code`. `rmforge.errors` (and `rmforge`) re-export these as the public names.

No imports: anything may import this module.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for; the message says what to fix in one line (the
    command line shows it without a traceback and exits with `exit_code`)."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A config or argument that is not valid; the message names the field or argument."""
