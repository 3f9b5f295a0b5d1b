"""The `rmforge` command line: checks arguments, runs the stages, says what happened.

One module per group of commands: `pipeline` (run, annotate, curate, export, eval), `imports`
(the `rmforge import` group), `query` (sql, status, report, annotators) and `service` (review,
serve, the `rmforge server` group); `options` holds the options they share and `output` what
they print with. `RmforgeGroup` (`rmforge.console`) runs every command.

Adding a command: write its function in the module of its group and register it below (the
order there is the order of `rmforge -h`), or decorate it with `@import_app.command("name")`
for `rmforge import name`. Raise `UserError("...")` (`rmforge.errors`) for anything the user
must fix: it is shown as one `error:` line on stderr with its exit code (1 unless a subclass
says otherwise). Commands that run a stage call its function in `rmforge.api` (the Python API:
the same checks, the flow inside `running_flows()`), check their own flags first so that
messages name them, and end with `report(summary, json_output, lines)`. Check everything you
can before the first flow starts: Prefect takes seconds to start.
"""

from __future__ import annotations

import os

# Before Prefect is imported: no telemetry from an offline machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Prefect's 20 s default for its temporary server is too short on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Each call to a Prefect server that stopped answering retries after 2 s and 4 s, not 5 times
# over a minute: a run failing on a lost server makes two such calls, so the command gives up
# in about 15 s instead of 2.5 minutes. Work already done stays stored and a rerun resumes.
os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "2")

import typer

from rmforge.cli import imports, pipeline, query, service
from rmforge.console import RmforgeGroup, Settings, configure_logging, version_callback

app = typer.Typer(
    cls=RmforgeGroup,
    help="Synthesize, label and curate data for reward models.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show library INFO logs (Prefect, vLLM, HTTP)."),
    debug: bool = typer.Option(False, "--debug", envvar="RMFORGE_DEBUG", help="Show tracebacks of errors."),
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Show the version and exit."
    ),
    no_shared_server: bool = typer.Option(
        False,
        "--no-shared-server",
        help="Run flows on a temporary Prefect server of this command's own, not the background one "
        "commands start and share (also RMFORGE_SHARED_SERVER=0).",
    ),
) -> None:
    """Synthesize, label and curate data for reward models."""
    if no_shared_server:
        from rmforge.server import SHARED_SERVER_VARIABLE

        os.environ[SHARED_SERVER_VARIABLE] = "0"
    Settings.debug, Settings.verbose = debug, verbose
    configure_logging(verbose, debug)


# The commands, in the order `rmforge -h` lists them (the groups come last).
app.command()(pipeline.run)
app.command()(pipeline.annotate)
app.command()(pipeline.curate)
app.command()(pipeline.export)
app.command()(query.sql)
app.command("eval")(pipeline.evaluate)
app.command()(service.review)
app.command()(query.status)
app.command()(service.serve)
app.command("annotators")(query.list_annotators)
app.command("report")(query.run_report)
app.add_typer(imports.import_app, name="import")
app.add_typer(service.server_app, name="server")

__all__ = ["app"]
