"""Another site on this machine: a page served from a second loopback port, whose scripts
try to reach rmforge's servers the way a page in the user's browser could."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FOREIGN_ORIGIN_HEADERS = {"Origin": "http://evil.example"}
# A DNS-rebinding page reaches 127.0.0.1 under its own name: the Host header gives it away.
FOREIGN_HOST_HEADERS = {"Host": "evil.example"}


class _BlankPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@contextmanager
def foreign_site() -> Iterator[str]:
    """A blank page on 127.0.0.1 at a free port; yields its URL (a different origin)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlankPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def fetch_from(page, url: str, init: dict | None = None) -> str:
    """Run fetch(url, init) in `page`; the response text a script could read, or
    'blocked' when the browser refused to hand it over (CORS) or the request failed."""
    return page.evaluate(
        """async ([url, init]) => {
            try {
                const response = await fetch(url, init);
                if (response.type === "opaque") return "blocked";
                return response.status + " " + await response.text();
            } catch (error) {
                return "blocked";
            }
        }""",
        [url, init or {}],
    )
