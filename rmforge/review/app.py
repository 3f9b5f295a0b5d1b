"""`rmforge review`: a local web app where people label steps (FastAPI + Jinja2 + htmx).

Pages are rendered on the server with autoescaping on, so text from the data (model
output, reasons, critiques) is always shown as text. The app opens the store per request
and closes it after, so `rmforge sql` and `rmforge curate` can use the file between
clicks. It writes nothing but the reviewer's `human` labels.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from rmforge.review import queries as review
from rmforge.schemas.records import Verdict, stable_hash, utc_now
from rmforge.store import Store, StoreBusy

# Templates and static files are package data: found through the package, installed or not.
ASSETS = Path(str(resources.files("rmforge.review")))
PAGE_SIZE = 50
# Page and step numbers past this are typos or probes: refused (422) before DuckDB sees them.
MAX_PAGE_OR_STEP = 2**31 - 1
# Seconds a request in flight may finish in after SIGTERM; uvicorn would otherwise wait for it.
SHUTDOWN_GRACE_S = 2
VERDICT_CHOICES = (("correct", "c", "correct"), ("incorrect", "i", "incorrect"), ("unknown", "u", "unsure"))
# Only our own files run: data on the page can never bring a script, a style or an image.
# KaTeX needs only font-src: it sets its inline sizes through the DOM (CSSOM), which `style-src
# 'self'` allows. The one style attribute it writes (width, on the SVG of \oiint and of very
# tall delimiters) is blocked with no visible change (a pixel of antialiasing at most), as the
# SVG's box already has that width; so styles and their attributes get no 'unsafe-inline'.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends `Origin: null` with the page's own POSTs,
    # and the origin check below could not tell them from a sandboxed foreign page's.
    "Referrer-Policy": "same-origin",
}
# Off loopback, the browser holds the access token in this cookie once the printed link was opened.
ACCESS_COOKIE = "rmforge_review_access"


class ReadersOrWriter:
    """Any number of readers at once, or one writer alone."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._writing)
            self._readers += 1
        try:
            yield
        finally:
            with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._writing and not self._readers)
            self._writing = True
        try:
            yield
        finally:
            with self._changed:
                self._writing = False
                self._changed.notify_all()


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_own_origin(request: Request) -> bool:
    """No Origin header (not a browser, or a plain navigation) or this very server's."""
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host')}"


def _is_token(candidate: str | None, token: str) -> bool:
    return candidate is not None and secrets.compare_digest(candidate.encode(), token.encode())


def check_access(request: Request, token: str) -> Response | None:
    """None when the request may go on: it carries the access cookie. The printed link's
    `?token=` is exchanged for that cookie and taken out of the address bar (and history);
    anything else is 401."""
    if _is_token(request.cookies.get(ACCESS_COOKIE), token):
        return None
    if not _is_token(request.query_params.get("token"), token):
        return Response(
            "open the link `rmforge review` printed (it carries the access token)",
            status_code=401,
            media_type="text/plain",
        )
    url = request.url.remove_query_params("token")
    entered = RedirectResponse(url.path + (f"?{url.query}" if url.query else ""), status_code=303)
    # Strict: no other site's page can make the browser send it.
    entered.set_cookie(ACCESS_COOKIE, token, httponly=True, samesite="strict", path="/")
    return entered


def queue_filters(
    problem: str = "", model: str = "", annotator: str = "", verdict: str = "", pending: bool = False
) -> review.QueueFilters:
    """The queue's filters from a page's query string (the links between pages keep them)."""
    return review.QueueFilters(problem.strip(), model, annotator, verdict, pending)


def create_app(db: str | Path, reviewer: str, *, host: str = "127.0.0.1") -> FastAPI:
    """The review app over the store at `db`, labelling as `reviewer`. Listening off
    loopback, other machines can reach it: every request then needs `app.state.access_token`
    (a link with `?token=`, then a cookie)."""
    review.reviewer_annotator(reviewer)  # a name the human annotator rejects fails here, not on a click
    try:
        Store(db).close()  # creates the tables and views an older store may lack
    except Exception as exc:  # another process (e.g. `rmforge curate`) holds the file
        raise StoreBusy(f"cannot open {db}: {exc}") from exc
    in_use: set[Store] = set()  # stores requests have open now

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn gives up on requests after SHUTDOWN_GRACE_S, but Python still waits for
        # their threads before it exits: stop their statements so SIGTERM ends the process.
        while in_use:
            for opened in list(in_use):
                opened.interrupt()
            await asyncio.sleep(0.05)

    app = FastAPI(title="rmforge review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    templates = Jinja2Templates(directory=ASSETS / "templates")  # autoescape is on for .html
    templates.env.filters.update(when=_when, number=_number)
    templates.env.globals.update(reviewer=reviewer, db=str(db), verdict_choices=VERDICT_CHOICES)
    # One run id per app start: labels saved in one review session share it.
    run_id = "review-" + stable_hash("review", reviewer, utc_now().isoformat(), length=12)
    app.mount("/static", StaticFiles(directory=ASSETS / "static"), name="static")
    access_token = None if is_loopback(host) else secrets.token_urlsafe(32)
    app.state.access_token = access_token
    if is_loopback(host):
        # A page on another site cannot reach this app through a rebound DNS name. (Off
        # loopback the names are unknown; the token, bound to the name used, does this.)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", host])

    def refusal(request: Request) -> Response | None:
        if access_token is not None and (entry := check_access(request, access_token)) is not None:
            return entry
        if not is_own_origin(request):
            return Response("requests come from the review page only", status_code=403)
        # htmx sends HX-Request; a cross-site form cannot send a custom header without a
        # CORS preflight, which this app never answers.
        if request.method == "POST" and request.headers.get("hx-request") != "true":
            return Response("writes come from the review page only", status_code=403)
        return None

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        response = refusal(request) or await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(review.ReviewError)
    async def not_found(request: Request, exc: review.ReviewError) -> Response:
        return Response(str(exc), status_code=404, media_type="text/plain")

    @app.exception_handler(StoreBusy)
    async def busy(request: Request, exc: StoreBusy) -> Response:
        return Response(str(exc), status_code=503, media_type="text/plain")

    # DuckDB refuses a read-only and a read-write connection to one file side by side in a
    # process; read-only ones share it, so a slow page holds up saving a label but no page.
    access = ReadersOrWriter()

    @contextmanager
    def store(*, write: bool = False) -> Iterator[Store]:
        with access.writing() if write else access.reading():
            try:
                opened = Store(db, read_only=not write)
            except Exception as exc:  # another process (e.g. `rmforge curate`) holds the file
                raise StoreBusy(f"cannot open {db}: {exc}; try again in a moment") from exc
            with opened:
                in_use.add(opened)
                try:
                    yield opened
                finally:
                    in_use.discard(opened)

    def link(path: str, filters: review.QueueFilters, **extra: Any) -> str:
        query = {**filters.query(), **{k: v for k, v in extra.items() if v is not None}}
        return f"{path}?{urlencode(query)}" if query else path

    @app.get("/", response_class=HTMLResponse)
    def queue_page(
        request: Request,
        filters: Annotated[review.QueueFilters, Depends(queue_filters)],
        page: Annotated[int, Query(ge=1, le=MAX_PAGE_OR_STEP)] = 1,
        done: bool = False,
    ) -> Response:
        with store() as s:
            rows, total = review.review_queue(s, filters, reviewer, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
            choices = review.filter_choices(s)
        for row in rows:
            row["url"] = link("/rollout", filters, id=row["rollout_id"])
        pages = max(1, -(-total // PAGE_SIZE))
        return templates.TemplateResponse(
            request,
            "queue.html",
            {
                "rows": rows,
                "total": total,
                "filters": filters,
                "choices": choices,
                "verdicts": [v for v, _, _ in VERDICT_CHOICES],
                "page": page,
                "pages": pages,
                "prev_url": link("/", filters, page=page - 1) if page > 1 else None,
                "next_page_url": link("/", filters, page=page + 1) if page < pages else None,
                "first_url": rows[0]["url"] if rows else None,
                "done": done,
            },
        )

    @app.get("/rollout", response_class=HTMLResponse)
    def rollout_page(
        request: Request,
        id: str,
        filters: Annotated[review.QueueFilters, Depends(queue_filters)],
        step_offset: Annotated[int, Query(ge=0, le=MAX_PAGE_OR_STEP)] = 0,
    ) -> Response:
        with store() as s:
            view = review.rollout_review(s, id, reviewer, first_step=step_offset)
        step_total = view["rollout"]["step_total"]
        later = step_offset + review.STEPS_PER_PAGE
        earlier = max(0, step_offset - review.STEPS_PER_PAGE) or None  # the first page's link has no offset
        return templates.TemplateResponse(
            request,
            "rollout.html",
            {
                "view": view,
                "r": view["rollout"],
                "first_shown": step_offset + 1,
                "last_shown": min(later, step_total),
                "step_total": step_total,
                "earlier_steps_url": link("/rollout", filters, id=id, step_offset=earlier) if step_offset else None,
                "later_steps_url": link("/rollout", filters, id=id, step_offset=later) if later < step_total else None,
                "queue_url": link("/", filters),
                "next_url": link("/next", filters, id=id),
            },
        )

    @app.get("/next")
    def next_rollout(
        id: str,
        filters: Annotated[review.QueueFilters, Depends(queue_filters)],
    ) -> Response:
        with store() as s:
            following = review.next_in_queue(s, id, filters, reviewer)
        target = link("/rollout", filters, id=following) if following else link("/", filters, done=1)
        return RedirectResponse(target, status_code=303)

    @app.post("/label", response_class=HTMLResponse)
    def label(
        request: Request,
        rollout_id: Annotated[str, Form()],
        target: Annotated[review.ReviewTarget, Form()],
        verdict: Annotated[Verdict, Form()],
        step: Annotated[int | None, Form(ge=0, le=MAX_PAGE_OR_STEP)] = None,
    ) -> Response:
        with store(write=True) as s:
            review.save_verdict(s, rollout_id, target, verdict, reviewer, run_id, step_index=step)
            # Only the labelled item goes back: read that step alone, or no step.
            view = review.rollout_review(
                s, rollout_id, reviewer, first_step=step or 0, step_count=1 if target == "step" else 0
            )
        item = view["steps"][0] if target == "step" else view["outcome"]
        return templates.TemplateResponse(
            request,
            "_item.html",
            {
                "r": view["rollout"],
                "item": item,
                "target": target,
            },
        )

    @app.get("/figures", response_class=HTMLResponse)
    def figures_page(request: Request) -> Response:
        with store() as s:
            figures = review.agreement_figures(s)
        return templates.TemplateResponse(request, "figures.html", figures)

    return app


def serve(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
