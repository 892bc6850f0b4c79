"""A real HTTP server on 127.0.0.1 that speaks OpenAI chat completions (plain and SSE-streamed) for the tests.

It stands in for a paid remote API only; the real ``openai`` client talks to it over the socket.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OpenAIServer:
    """``with OpenAIServer(answer="...") as srv: srv.base_url``; ``srv.requests`` holds the JSON bodies seen."""

    def __init__(self, answer: str = "The remote model says the patient had pneumonia.", model: str = "remote-gpt"):
        self.answer, self.model, self.requests = answer, model, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _json(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                outer.requests.append(body)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                words = outer.answer.split(" ")[: int(body.get("max_tokens") or 10**6)]
                created, cid = int(time.time()), "chatcmpl-test"
                if not body.get("stream"):
                    self._json(200, {"id": cid, "object": "chat.completion", "created": created,
                                     "model": body.get("model"), "choices": [{
                                         "index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": " ".join(words)}}],
                                     "usage": {"prompt_tokens": 1, "completion_tokens": len(words),
                                               "total_tokens": len(words) + 1}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                for i, w in enumerate(words):
                    chunk = {"id": cid, "object": "chat.completion.chunk", "created": created,
                             "model": body.get("model"), "choices": [{
                                 "index": 0, "finish_reason": None,
                                 "delta": ({"role": "assistant"} if i == 0 else {}) | {
                                     "content": w if i == 0 else " " + w}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(0.01)
                end = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.get("model"),
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
