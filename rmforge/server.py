"""Prefect servers for the CLI: a local one in the background that commands share, and the
temporary one a command starts when told not to share (`--no-shared-server`,
RMFORGE_SHARED_SERVER=0).

Starting a Prefect server takes seconds (5-8 s on 2 idle cores, over a minute on busy ones), far
more than a small command's own work. So the first command that runs a flow starts a server in
the background and later commands use it: it stops itself after RMFORGE_SERVER_IDLE_S seconds
(default 1200) without a request or an open connection; commands call it while their flows run
(`kept_alive`). `rmforge server start` starts one that runs until `rmforge server stop`.

Both answer their own pages only. Prefect's defaults let any site in (`Access-Control-Allow-
Origin: *`, any Host): a page open in the user's browser could read flow runs, create
variables and, with `rmforge serve`, start deployment runs. So rmforge sets Prefect's CORS
origins to the server's own and starts its app behind `OwnOriginOnly`.

State (pid, URL) and the server's log live in the state folder: $RMFORGE_STATE_DIR,
else $PREFECT_HOME, else ~/.rmforge.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from rmforge.errors import UserError
from rmforge.orphans import environment_for_a_lasting_child

DEFAULT_PORT = 4200
START_TIMEOUT_S = 120.0
DEFAULT_IDLE_STOP_S = 1200
# Seconds unused before a command-started server stops itself; `start` sets it in the server's own
# environment too (0 there: it runs until `rmforge server stop`).
IDLE_VARIABLE = "RMFORGE_SERVER_IDLE_S"
# Both servers listen on 127.0.0.1 only; these are the names a page of its own can use.
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
PREFECT_APP_FACTORY = "prefect.server.api.server:create_app"
GUARDED_APP_FACTORY = "rmforge.server:create_guarded_prefect_app"


def own_origins(port: int) -> list[str]:
    return [f"http://{name}:{port}" for name in LOOPBACK_NAMES]


def own_origin_settings(port: int) -> dict[str, str]:
    """Environment for a Prefect server on 127.0.0.1:`port` that lets only its own pages in."""
    return {"PREFECT_SERVER_CORS_ALLOWED_ORIGINS": ",".join(own_origins(port))}


class OwnOriginOnly:
    """ASGI guard in front of the Prefect app. A foreign Host header is a page that reached
    127.0.0.1 through a rebound DNS name (400). A foreign Origin is another site's page: CORS
    only keeps it from reading answers, while its simple POSTs and websockets would still
    act, so it gets 403. Clients that send no Origin (Prefect's own, curl) pass."""

    def __init__(self, app: Any, origins: list[str]) -> None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        self.app = TrustedHostMiddleware(app, allowed_hosts=list(LOOPBACK_NAMES))
        self.origins = set(origins)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.datastructures import Headers
        from starlette.responses import PlainTextResponse

        if scope["type"] in ("http", "websocket"):
            origin = Headers(scope=scope).get("origin")
            if origin is not None and origin not in self.origins:
                await PlainTextResponse("requests from other sites are refused", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_guarded_prefect_app() -> OwnOriginOnly | StopWhenIdle:
    """uvicorn's factory for rmforge's Prefect servers: Prefect's app behind `OwnOriginOnly`,
    which lets in the origins Prefect's CORS setting names (see `own_origin_settings`)."""
    from prefect.server.api.server import create_app
    from prefect.settings import get_current_settings

    origins = get_current_settings().server.api.cors_allowed_origins.split(",")
    if "*" in origins:  # started without own_origin_settings: refuse to run wide open
        raise RuntimeError("PREFECT_SERVER_CORS_ALLOWED_ORIGINS must name the server's own origins")
    guarded = OwnOriginOnly(create_app(), origins)
    idle_stop_s = float(os.environ.get(IDLE_VARIABLE) or 0)
    return StopWhenIdle(guarded, idle_stop_s) if idle_stop_s > 0 else guarded


class StopWhenIdle:
    """ASGI wrapper that ends its server (SIGTERM to this process: uvicorn shuts down cleanly)
    once no request or websocket has been open for `idle_s` seconds. Commands that use it call it
    while their flows run (`kept_alive`); an open UI page polls it."""

    def __init__(self, app: Any, idle_s: float) -> None:
        self.app = app
        self.idle_s = idle_s
        self.open_connections = 0
        # The clock starts once the server could have answered the command that started it (the
        # app exists before its start-up work is done, which takes long on a busy machine).
        self.last_activity = time.monotonic() + START_TIMEOUT_S
        self._lock = threading.Lock()
        threading.Thread(target=self._watch, name="stop-when-idle", daemon=True).start()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        with self._lock:
            self.open_connections += 1
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self.open_connections -= 1
                self.last_activity = time.monotonic()

    def idle_for(self) -> float:
        with self._lock:
            return 0.0 if self.open_connections else time.monotonic() - self.last_activity

    def _watch(self) -> None:
        while True:
            idle = self.idle_for()
            if idle >= self.idle_s:
                print(f"rmforge: no request for {idle:.0f} s: stopping", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(min(max(self.idle_s - idle, 0.0), 30.0) + 0.05)


def state_dir() -> Path:
    root = os.environ.get("RMFORGE_STATE_DIR") or os.environ.get("PREFECT_HOME") or Path.home() / ".rmforge"
    return Path(root)


@dataclass
class ServerState:
    pid: int
    api_url: str
    log: str
    idle_stop_s: float = 0  # 0: runs until `rmforge server stop`

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    @property
    def idle_stop(self) -> str:
        """How long it runs unused before it stops itself, for messages ("20 min")."""
        return f"{self.idle_stop_s / 60:.0f} min"


def _state_file() -> Path:
    return state_dir() / "rmforge-server.json"


def _alive(pid: int) -> bool:
    try:  # when this process started the server, an exited one stays a zombie until reaped
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child: its parent (or init) reaps it
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def read_state() -> ServerState | None:
    """The server this state folder started, if it is still running."""
    try:
        state = ServerState(**json.loads(_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if _alive(state.pid) else None


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise UserError("no free port for the Prefect server")


def _wait_until_healthy(process: subprocess.Popen, api_url: str, log: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"the Prefect server exited with code {process.returncode}; see {log}")
        if healthy(api_url, timeout_s=1.0):
            return
        time.sleep(0.2)
    raise UserError(f"the Prefect server did not answer within {START_TIMEOUT_S:.0f} s; see {log}")


@contextmanager
def _starting_lock() -> Iterator[None]:
    """One process at a time checks for a server and starts one: two commands started together
    must not start two servers (the second would take over the state file)."""
    import fcntl

    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "rmforge-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def start(port: int = DEFAULT_PORT, idle_stop_s: float = 0) -> ServerState:
    """Start the server in the background (its own session: it outlives this command), or
    return the one running. `idle_stop_s` > 0: it stops itself after that long without a request."""
    with _starting_lock():
        return read_state() or _start(port, idle_stop_s)


def _start(port: int, idle_stop_s: float) -> ServerState:
    folder = state_dir()
    port = _free_port(port)
    log = folder / "rmforge-server.log"
    # What `prefect server start --background` runs, with rmforge's factory in place of
    # Prefect's (that command has no way to put a guard in front of the app). Without the
    # marker that ends this command's children with it: the server outlives it.
    env = {
        **environment_for_a_lasting_child(),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT__SERVER_FINAL": "1",
        **own_origin_settings(port),
        # the UI's pages call the API at this address
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        IDLE_VARIABLE: str(idle_stop_s),
    }
    env.pop("PREFECT_API_URL", None)
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                GUARDED_APP_FACTORY,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    state = ServerState(pid=process.pid, api_url=f"http://127.0.0.1:{port}/api", log=str(log), idle_stop_s=idle_stop_s)
    _state_file().write_text(json.dumps(asdict(state)))
    try:
        _wait_until_healthy(process, state.api_url, str(log))
    except UserError:
        stop()
        raise
    return state


def stop() -> ServerState | None:
    """Stop the server this state folder started; None when none was running."""
    state = read_state()
    _state_file().unlink(missing_ok=True)
    if state is None:
        return None
    os.killpg(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(state.pid):
        os.killpg(state.pid, signal.SIGKILL)
    return state


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGTERM when the parent dies, even by
    SIGKILL, which no handler or atexit of the parent can see (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def bind_temporary_server_to_this_process() -> None:
    """Make the temporary server Prefect starts for this command (when none is running)
    die with it and answer its own origin only. Prefect's own is left running by a
    SIGKILLed command and lets any site in: register, before Prefect needs one, a server
    started with `_die_with_parent` and rmforge's guarded app (the same way
    prefect_test_harness registers its server)."""
    from prefect.server.api.server import SubprocessASGIServer

    class GuardedDiesWithParent(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen:
            port = self.port
            if port is None:  # `start` chooses the port before it runs the command
                raise RuntimeError("Prefect runs its server before choosing a port: update rmforge.server")

            def guarded(options: dict[str, Any]) -> dict[str, Any]:
                if PREFECT_APP_FACTORY not in options["args"]:  # a newer Prefect: fail, not run unguarded
                    raise RuntimeError(f"Prefect no longer starts {PREFECT_APP_FACTORY}: update rmforge.server")
                args = [GUARDED_APP_FACTORY if arg == PREFECT_APP_FACTORY else arg for arg in options["args"]]
                return {
                    **options,
                    "args": args,
                    # it ends with this command, never for idleness: no `kept_alive` calls it
                    "env": {**options["env"], **own_origin_settings(port), IDLE_VARIABLE: "0"},
                    "preexec_fn": _die_with_parent,
                }

            with patched_popen(guarded):
                return super()._run_uvicorn_command()

    if SubprocessASGIServer._instances.get(None) is None:
        GuardedDiesWithParent()


@contextmanager
def patched_popen(adjust: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[None]:
    """subprocess.Popen with its keyword arguments passed through `adjust`, for the one call
    made inside this block."""
    original = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        return original(*args, **adjust(kwargs))

    with mock.patch.object(subprocess, "Popen", popen):
        yield


def api_url_in_use() -> str | None:
    """The Prefect API this process talks to: the configured or running server, else the
    temporary one Prefect started for this command; None before any."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.server.api.server import SubprocessASGIServer

    temporary = SubprocessASGIServer._instances.get(None)
    return temporary.api_url if temporary is not None and temporary.server_process is not None else None


def raise_if_server_lost(error: Exception) -> None:
    """A UserError in place of `error` when the Prefect server no longer answers: then the
    server is the cause, whatever call `error` came from. Store writes are transactions, and
    the run is marked failed in the store, not on the server."""
    api_url = api_url_in_use()
    if api_url is not None and not healthy(api_url):
        raise UserError(
            f"the Prefect server at {api_url} stopped answering ({type(error).__name__}: {error}); "
            "the store is consistent and a rerun resumes where this run stopped"
        ) from error


SHARED_SERVER_VARIABLE = "RMFORGE_SHARED_SERVER"


def shared_server_wanted() -> bool:
    """Whether commands may start a background server for later commands (RMFORGE_SHARED_SERVER=0: no)."""
    return os.environ.get(SHARED_SERVER_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


def idle_stop_seconds() -> float:
    raw = os.environ.get(IDLE_VARIABLE)
    try:
        seconds = float(raw) if raw else DEFAULT_IDLE_STOP_S
    except ValueError:
        raise UserError(f"{IDLE_VARIABLE}={raw!r}: expected seconds, e.g. 1200") from None
    if seconds <= 0:
        raise UserError(f"{IDLE_VARIABLE}={raw!r}: expected a positive number of seconds")
    return seconds


@dataclass(frozen=True)
class ServerInUse:
    """The Prefect server this process's flows talk to."""

    api_url: str | None  # None: Prefect starts a temporary one for this process
    background: ServerState | None = None  # the state-folder server, when it is the one
    started_now: bool = False


def use_or_start_shared_server() -> ServerInUse:
    """Point this process at the server its flows will use: the configured or running one, else a
    shared one started now (unless RMFORGE_SHARED_SERVER=0). Call before Prefect is imported."""
    if os.environ.get("PREFECT_API_URL"):
        return ServerInUse(os.environ["PREFECT_API_URL"])
    state = read_state()
    if state is not None and healthy(state.api_url):
        os.environ["PREFECT_API_URL"] = state.api_url
        return ServerInUse(state.api_url, state)
    if not shared_server_wanted():
        return ServerInUse(None)
    with _starting_lock():
        state = read_state()
        started_now = state is None
        if state is None:
            state = _start(DEFAULT_PORT, idle_stop_seconds())
        elif not healthy(state.api_url, timeout_s=10.0):  # a busy machine answers slowly; never start a second
            raise UserError(
                f"the background Prefect server (pid {state.pid}) does not answer at {state.api_url}; "
                f"see {state.log}, or stop it with `rmforge server stop`"
            )
    os.environ["PREFECT_API_URL"] = state.api_url
    return ServerInUse(state.api_url, state, started_now)


@contextmanager
def kept_alive(server: ServerInUse) -> Iterator[None]:
    """While flows run, call a server that stops when idle often enough that it never does: a flow
    can go minutes without calling its API (an engine starting, a long batch)."""
    background = server.background
    if background is None or not background.idle_stop_s:
        yield
        return
    stop = threading.Event()

    def ping() -> None:
        while not stop.wait(max(background.idle_stop_s / 4, 0.5)):
            healthy(background.api_url)

    pinger = threading.Thread(target=ping, name="keep-prefect-server-alive", daemon=True)
    pinger.start()
    try:
        yield
    finally:
        stop.set()
