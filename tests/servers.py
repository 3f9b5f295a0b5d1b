"""A real OpenAI-compatible HTTP server on loopback, for tests at the LLM boundary."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What `misbehave_next` can make the server do instead of answering well.
FAULTS = {
    "hang": None,  # answer nothing until the client gives up (`hang_s`)
    "not_json": (200, b"<html>502 Bad Gateway</html>"),
    "json_list": (200, b"[1, 2, 3]"),
    "no_choices": (200, b'{"object": "chat.completion", "usage": {}}'),
    "choices_not_list": (200, b'{"choices": "oops"}'),
    "null_message": (200, b'{"choices": [{"index": 0, "message": null, "finish_reason": "stop"}]}'),
    "null_content": (
        200,
        b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "stop"}]}',
    ),
    "bad_usage": None,  # well-formed choices, `usage.completion_tokens` a string
    "wrong_n": None,  # one choice fewer than asked
    "cut_body": None,  # Content-Length promises more than is sent
}


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet handler that answers JSON."""

    def log_message(self, *args):
        pass

    def reply(self, status, payload):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, serving `handler` until `close`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], path: str = ""):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ChatServer(LoopbackServer):
    """Answers /v1/chat/completions with `respond(body, index) -> text | (text, finish_reason)`.

    `fail_next` makes the next calls return those HTTP statuses; `misbehave_next` makes
    them misbehave (one of FAULTS); payloads are recorded.
    """

    def __init__(self, respond, *, hang_s: float = 5.0):
        self.payloads, self.headers, self.fail_next, self.misbehave_next = [], [], [], []
        server = self

        class Handler(JsonHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.payloads.append(body)
                server.headers.append(dict(self.headers))
                if server.fail_next:
                    status = server.fail_next.pop(0)
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "nope"}')
                    return
                fault = server.misbehave_next.pop(0) if server.misbehave_next else None
                if fault == "hang":
                    time.sleep(hang_s)
                    return
                if FAULTS.get(fault) is not None:
                    self.reply(*FAULTS[fault])
                    return
                n = body.get("n", 1) - (1 if fault == "wrong_n" else 0)
                replies = [respond(body, i) for i in range(n)]
                replies = [r if isinstance(r, tuple) else (r, "stop") for r in replies]
                choices = [
                    {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                    for i, (text, reason) in enumerate(replies)
                ]
                usage = {"completion_tokens": "many" if fault == "bad_usage" else 10 * len(choices)}
                payload = json.dumps({"choices": choices[::-1], "usage": usage}).encode()
                if fault == "cut_body":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload) + 100))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    return
                self.reply(200, payload)

        super().__init__(Handler, "/v1")


class PoolingServer(LoopbackServer):
    """Answers vLLM's `POST /pooling` (vllm 0.32's request and reply shapes, see
    generators/http_scorer.py) with `score(body) -> rows`: per step, the class probabilities.

    `score` may instead return `(status, text)` to answer an error, or a dict to answer that
    JSON as is (a malformed reply). Payloads and request paths are recorded.
    """

    def __init__(self, score):
        self.payloads, self.paths = [], []
        server = self

        class Handler(JsonHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.payloads.append(body)
                server.paths.append(self.path)
                reply = score(body) if self.path == "/pooling" else (404, '{"detail": "Not Found"}')
                status = 200
                if isinstance(reply, tuple):
                    status, payload = reply[0], reply[1].encode()
                elif isinstance(reply, dict):
                    payload = json.dumps(reply).encode()
                else:
                    data = [{"index": 0, "object": "pooling", "data": reply}]
                    payload = json.dumps({"object": "list", "model": body.get("model"), "data": data}).encode()
                self.reply(status, payload)

        super().__init__(Handler)
