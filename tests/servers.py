"""A real OpenAI-compatible HTTP server on loopback, for tests at the LLM boundary."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    """Answers /v1/chat/completions with `respond(body, index) -> text | (text, finish_reason)`.

    `fail_next` makes the next calls return those HTTP statuses; payloads are recorded.
    """

    def __init__(self, respond):
        self.payloads, self.headers, self.fail_next = [], [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

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
                replies = [respond(body, i) for i in range(body.get("n", 1))]
                replies = [r if isinstance(r, tuple) else (r, "stop") for r in replies]
                choices = [
                    {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                    for i, (text, reason) in enumerate(replies)
                ]
                payload = json.dumps({"choices": choices[::-1],
                                      "usage": {"completion_tokens": 10 * len(choices)}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
