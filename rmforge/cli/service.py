"""The commands that keep running or keep a process running: `review` (the web app), `serve`
(the deployments' schedules) and the `rmforge server` group (a background Prefect server)."""

from __future__ import annotations

import os

import typer

from rmforge.cli.options import DbOption
from rmforge.cli.output import console, say
from rmforge.errors import UserError

server_app = typer.Typer(help="A local Prefect server in the background (faster commands, a UI).", no_args_is_help=True)


def review(
    db: str | None = DbOption,
    host: str = typer.Option(
        "127.0.0.1",
        help="Interface to listen on (loopback unless you say otherwise; "
        "off loopback the page needs the printed link's token).",
    ),
    port: int = typer.Option(8765, help="Port to listen on."),
    reviewer: str | None = typer.Option(None, help="Your name on the labels (default: $USER)."),
) -> None:
    """Review step labels in the browser and record your verdicts as `human` labels."""
    import getpass

    from pydantic import ValidationError

    from rmforge.review.app import create_app, serve
    from rmforge.store import StoreBusy, resolve_store

    location = resolve_store(db)
    if not location.exists():
        raise UserError(f"no rmforge database at {location} (run `rmforge run` or `rmforge import` first)")
    name = reviewer or os.environ.get("USER") or getpass.getuser()
    try:
        review_app = create_app(location.url, name, host=host)
    except ValidationError as exc:  # the human annotator's config rejects the name
        raise UserError(f"--reviewer {name!r}: {exc.errors()[0]['msg']}") from None
    except StoreBusy as exc:
        if isinstance(exc.__cause__, UserError):  # a held file: its message, and exit 75
            raise exc.__cause__ from None
        raise UserError(str(exc)) from None
    console.print(f"Reviewing {location} as [bold]{name}[/bold] (Ctrl+C to stop):")
    token = review_app.state.access_token
    if token:
        typer.echo(
            f"warning: on {host} the page is reachable from other machines; "
            "anyone with the link below can label as you",
            err=True,
        )
    # typer.echo, not rich: a link rich wrapped at the terminal's width would not open.
    typer.echo(f"http://{host}:{port}/" + (f"?token={token}" if token else ""))
    serve(review_app, host=host, port=port)


def serve(limit: int = typer.Option(1, min=1, help="How many flow runs at once.")) -> None:
    """Serve every deployment of prefect.yaml with its schedule until Ctrl+C (no work pool needed)."""
    from rmforge.server import kept_alive, use_or_start_shared_server

    server = use_or_start_shared_server()
    if server.api_url is None:
        raise UserError(
            "rmforge serve needs a Prefect server that outlives it, for the schedules: "
            "run `rmforge server start` first (or set PREFECT_API_URL), or drop --no-shared-server"
        )
    import prefect

    from rmforge.flows.deployments import served_deployments

    deployments = served_deployments()
    say(f"Serving {', '.join(d.name for d in deployments)} (Ctrl+C to stop; the schedules pause).")
    with kept_alive(server):  # between scheduled runs too: the schedules live on the server
        prefect.serve(*deployments, limit=limit, print_starting_message=False)


@server_app.command("start")
def server_start(port: int = typer.Option(4200, min=1, max=65535, help="Preferred port.")) -> None:
    """Start a Prefect server in the background; later commands use it."""
    from rmforge import server

    state = server.start(port)
    say(f"Prefect server running at {state.ui_url} (pid {state.pid}, log {state.log}).")
    if state.idle_stop_s:
        say(
            f"A command started it: it stops after {state.idle_stop} unused "
            "(`rmforge server stop`, then `rmforge server start`, for one that keeps running)."
        )
    say("rmforge commands use it; other tools: export PREFECT_API_URL=" + state.api_url)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the background Prefect server."""
    from rmforge import server

    state = server.stop()
    say(f"Stopped the Prefect server (pid {state.pid})." if state else "No Prefect server was running.")


@server_app.command("status")
def server_status() -> None:
    """Whether the background Prefect server runs, and where."""
    from rmforge import server

    state = server.read_state()
    if os.environ.get("PREFECT_API_URL"):
        say(f"PREFECT_API_URL is set: commands use {os.environ['PREFECT_API_URL']}")
    if state is None:
        # An answer, not an error: on stdout, with exit 1 for scripts (`status && ...`).
        console.print("No background Prefect server (start one with `rmforge server start`).")
        raise typer.Exit(code=1)
    answering = "answering" if server.healthy(state.api_url) else "NOT answering"
    say(f"Prefect server {answering} at {state.ui_url} (pid {state.pid}, log {state.log}).")
    if state.idle_stop_s:
        say(f"It stops after {state.idle_stop} unused.")
