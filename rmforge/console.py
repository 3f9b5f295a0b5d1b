"""How the command line behaves around its commands: one-line errors, quiet logs,
clean interruption. Commands themselves live in `rmforge.cli`.

A command reports what the user must fix one way: it raises a `UserError` (`rmforge.errors`;
raised below the CLI too: a busy store, an input file that cannot be imported, an export
folder that cannot be written). `RmforgeGroup` prints its message as one `error:` line on
stderr and exits with its `exit_code`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from rmforge.errors import UserError
from rmforge.orphans import bind_children_to_this_process

if TYPE_CHECKING:  # checked against the installed typer, which carries its own click
    from typer._click import exceptions as click_exceptions
else:
    try:  # typer >= 0.2x carries its own copy of click
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import exceptions as click_exceptions

# Libraries whose INFO chatter (engine start, HTTP requests, server start) is hidden unless --verbose.
NOISY_LOGGERS = (
    "prefect",
    "vllm",
    "httpx",
    "httpcore",
    "transformers",
    "datasets",
    "sentence_transformers",
    "urllib3",
    "filelock",
    "uvicorn",
    "torch",
    "huggingface_hub",
    "numexpr",
    "asyncio",
    "distributed",
    "ray",
)  # the dask and ray task runners


# The loggers of flow and task runs: their warnings are the flows' own (rows quarantined, an
# annotator unavailable); their errors are a run failing, crashing or being stopped.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def shown_without_verbose(record: logging.LogRecord) -> bool:
    """Of Prefect's records, only the run loggers' warnings reach the console.

    A run's error ends the command, whose one `error:` line names the cause (the tracebacks
    stay in the run's logs on the server); a stop the user asked for is no crash. Prefect's
    other records are its own bookkeeping (events, logs sent to the server, client retries)."""
    if record.name != "prefect" and not record.name.startswith("prefect."):
        return True
    return record.name.startswith(RUN_LOGGERS) and record.levelno < logging.ERROR


class Settings:
    """Root options, read by the error handler after the command ran."""

    debug = bool(os.environ.get("RMFORGE_DEBUG"))
    verbose = False
    quiet_prefect = True
    signal_received: int | None = None
    runs_flows = False  # set by the command once it starts flows, which record their runs


def configure_logging(verbose: bool, debug: bool = False) -> None:
    """Warnings and errors always (of Prefect's, see `shown_without_verbose`); INFO from the
    libraries only with --verbose; all of Prefect's errors with --verbose or --debug.

    Environment variables reach libraries not imported yet (Prefect reads its level at
    import, vLLM's engine runs in a child process); logger levels cover the rest. A level
    the user set in the environment wins.
    """
    level = "INFO" if verbose else "WARNING"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", level)
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout is for results (--json)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbose else "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "info" if verbose else "error")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", level.lower())  # distributed sets its level on import
    if not verbose:  # their tqdm bars would fight the progress display
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    Settings.quiet_prefect = not (verbose or debug)


def hide_prefect_noise() -> None:
    """Filter Prefect's console output (see `shown_without_verbose`) unless --verbose or --debug.

    On Prefect's console handlers, not on its loggers: the server keeps every run's logs.
    Call before flows run: the handlers exist once Prefect has set up its logging, which
    this does if need be."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
    # Prefect's internal logger writes through a handler of its own and does not propagate.
    handlers = logging.getLogger().handlers + logging.getLogger("prefect._internal").handlers
    for handler in handlers:
        if type(handler).__module__ != "prefect.logging.handlers":  # e.g. pytest's capture
            continue
        if Settings.quiet_prefect:
            handler.addFilter(shown_without_verbose)
        else:
            handler.removeFilter(shown_without_verbose)
    # Prefect's log shipping writes a server it cannot reach straight to stderr, unless
    # logging is told not to report handler errors.
    logging.raiseExceptions = not Settings.quiet_prefect


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def print_error(message: str) -> None:
    typer.echo(f"error: {one_line(message)}", err=True)


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl-C, so `finally` blocks (engine and server shutdown,
    marking the run cancelled) run instead of the process dying with children left behind.
    A second signal while cleaning up is ignored: cleanup is short and must finish.

    Inside a flow run Prefect's own SIGTERM handler comes first (it logs the run as
    crashed), then hands the signal on to this one."""
    previous: dict[signal.Signals, Any] = {}

    def interrupt(signum: int, frame: Any) -> None:
        if Settings.signal_received is not None:
            return
        Settings.signal_received = signum
        raise KeyboardInterrupt

    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        previous.clear()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class RmforgeGroup(TyperGroup):
    """Runs a command and turns every way it can end into an exit code and, for errors,
    one line on stderr (the traceback only with --debug). The processes it starts end with
    it, even when it is killed (see `rmforge.orphans`)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        Settings.signal_received = None
        bind_children_to_this_process()
        Settings.runs_flows = False
        code = 0
        try:
            with interruptible():
                result = super().main(
                    args,
                    prog_name,
                    complete_var,
                    standalone_mode=False,
                    windows_expand_args=windows_expand_args,
                    **extra,
                )
            code = result if isinstance(result, int) else 0
        except click_exceptions.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "rmforge"
            if exc.format_message():  # empty when a group without its command printed its help
                print_error(f"{exc.format_message()} (see `{command} -h`)")
            code = exc.exit_code
        except typer.Exit as exc:
            code = exc.exit_code
        except typer.Abort:
            code = 130
        except Exception as exc:
            # A user error, wherever it was raised, is its message (even with --debug) and its
            # exit code (75 for a busy store: retry later); anything else is a bug to report.
            if isinstance(exc, UserError):
                print_error(str(exc))
                code = getattr(exc, "exit_code", 1)
            elif Settings.debug:
                raise
            else:
                print_error(f"{type(exc).__name__}: {exc} (rerun with `rmforge --debug ...` for the traceback)")
                code = 1
        if Settings.signal_received is not None:
            name = signal.Signals(Settings.signal_received).name
            if Settings.runs_flows:
                typer.echo(f"cancelled by {name}; the run is marked cancelled in `runs`", err=True)
            else:
                typer.echo(f"stopped by {name}", err=True)
            code = 128 + Settings.signal_received
        if standalone_mode:
            sys.exit(code)
        return code


def version_callback(value: bool) -> None:
    if value:
        from rmforge import __version__

        typer.echo(f"rmforge {__version__}")
        raise typer.Exit()
