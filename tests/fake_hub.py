"""A stand-in for the Hugging Face Hub on loopback: the endpoints `HfApi.create_repo` and
`HfApi.upload_folder` call, and a record of what arrived.

- `POST /api/repos/create`: `{"name", "organization", "visibility", "type"}`; 409 when the repo exists.
- `POST /api/validate-yaml`: the card's metadata, checked before any upload.
- `POST /api/{type}s/{repo}/preupload/{revision}`: every file is answered `regular`, so its bytes
  travel base64 inside the commit (no LFS or Xet transfer).
- `POST /api/{type}s/{repo}/commit/{revision}`: NDJSON, a `header` line then one `file` line per file.

`refuse[endpoint] = status` makes that endpoint (`create`, `preupload`, `commit`) answer with an error;
`stall[endpoint] = seconds` makes it wait that long before answering.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_REPO_ROUTE = re.compile(r"^/api/(?P<type>datasets|models|spaces)/(?P<repo>[^/]+/[^/]+)/(?P<action>preupload|commit)/")


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo id -> {"type", "visibility", "files": {path: bytes}}
        self.commits: list[dict] = []  # {"repo", "summary", "paths"}
        self.calls: list[tuple[str, str]] = []  # (method, path)
        self.tokens: list[str | None] = []  # the Authorization header of each call
        self.refuse: dict[str, int] = {}
        self.stall: dict[str, float] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, payload: object) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                hub.calls.append(("GET", self.path))
                self.reply(404, {"error": "Repository not found"})

            def do_POST(self):
                hub.calls.append(("POST", self.path))
                hub.tokens.append(self.headers.get("Authorization"))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = _REPO_ROUTE.match(self.path)
                endpoint = "create" if self.path == "/api/repos/create" else route["action"] if route else None
                time.sleep(hub.stall.get(endpoint, 0))
                if endpoint == "create":
                    self.reply(*hub.create(json.loads(body)))
                elif self.path == "/api/validate-yaml":
                    self.reply(200, {})
                elif endpoint == "preupload":
                    self.reply(*hub.preupload(route["repo"], json.loads(body)))
                elif endpoint == "commit":
                    self.reply(*hub.commit(route["repo"], body))
                else:
                    self.reply(404, {"error": f"no route {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def create(self, payload: dict) -> tuple[int, dict]:
        if "create" in self.refuse:
            return self.refuse["create"], {
                "error": "You don't have the rights to create a dataset under this namespace"
            }
        repo = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo in self.repos:
            return 409, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo}"}
        self.repos[repo] = {"type": payload.get("type"), "visibility": payload.get("visibility"), "files": {}}
        return 200, {"url": f"{self.url}/datasets/{repo}"}

    def preupload(self, repo: str, payload: dict) -> tuple[int, dict]:
        if "preupload" in self.refuse:
            return self.refuse["preupload"], {"error": "refused"}
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        return 200, {
            "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in payload["files"]]
        }

    def commit(self, repo: str, body: bytes) -> tuple[int, dict]:
        if "commit" in self.refuse:
            return self.refuse["commit"], {"error": "refused"}
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header, operations = lines[0], lines[1:]
        assert header["key"] == "header", header
        files = self.repos[repo]["files"]
        for operation in operations:
            assert operation["key"] == "file" and operation["value"]["encoding"] == "base64", operation["key"]
            files[operation["value"]["path"]] = base64.b64decode(operation["value"]["content"])
        oid = hashlib.sha1(body).hexdigest()
        self.commits.append(
            {
                "repo": repo,
                "summary": header["value"]["summary"],
                "paths": [operation["value"]["path"] for operation in operations],
            }
        )
        return 200, {"commitUrl": f"{self.url}/datasets/{repo}/commit/{oid}", "commitOid": oid}
