"""A real HTTP server on 127.0.0.1 that speaks OpenAI chat completions (plain and SSE-streamed) for the tests.

It stands in for a paid remote API only; the real ``openai`` client talks to it over the socket. What it answers is
up to a *responder*: a callable that gets the request body and returns the reply text, an ``Error`` (status,
message, headers) or ``Raw`` bytes (a malformed body). Replies are cut to ``max_tokens`` words and streamed as SSE
chunks when the request asks for ``stream``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INSTRUCTION = re.compile(r"\[Instruction Begin\]\n(.*?)\n\[Instruction End\]", re.DOTALL)


@dataclass
class Error:
    """An HTTP error reply in OpenAI's error format."""

    status: int
    message: str = "error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Raw:
    """A reply body sent as it is (e.g. truncated JSON)."""

    body: bytes
    status: int = 200


Reply = str | Error | Raw


def prompt_of(body: dict) -> str:
    """The user messages of a request, joined by newlines."""
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")


def instruction_of(prompt: str) -> str:
    """The instruction of an Asclepius-format prompt (judge or answer prompt), or ""."""
    m = INSTRUCTION.search(prompt)
    return m.group(1) if m else ""


def completion(body: dict, text: str) -> dict:
    """The ``chat.completion`` object for ``text``; usage counts ~4 characters a prompt token, words as output."""
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4
    completion_tokens = len(text.split())
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class OpenAIServer:
    """``with OpenAIServer(responder) as srv: srv.base_url``.

    ``requests`` holds the JSON bodies in arrival order; ``log`` one entry per answered request (``body``,
    ``status``, ``text`` (None unless a text reply) and ``usage``); ``max_in_flight`` the most requests handled at
    once. With ``api_key`` set, any other bearer token gets a 401 before the responder is asked. ``delay`` seconds
    pass before each reply, ``chunk_delay`` between streamed chunks.
    """

    def __init__(self, responder: Callable[[dict], Reply] | None = None, *, answer: str = "The remote model says "
                 "the patient had pneumonia.", api_key: str | None = None, delay: float = 0.0,
                 chunk_delay: float = 0.01):
        self.responder = responder or (lambda body: answer)
        self.api_key, self.delay, self.chunk_delay = api_key, delay, chunk_delay
        self.requests: list[dict] = []
        self.log: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with outer._lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    outer._handle(self, body)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- protocol -------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        if h.path.rstrip("/") != "/v1/chat/completions":
            return self._send(h, body, Error(404, f"no route {h.path}"))
        if self.api_key is not None and h.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._send(h, body, Error(401, "Incorrect API key provided."))
        with self._lock:
            self.requests.append(body)
        reply = self.responder(body)
        if self.delay:
            time.sleep(self.delay)
        if isinstance(reply, str):
            reply = " ".join(reply.split(" ")[: int(body.get("max_tokens") or 10**6)])
        self._send(h, body, reply)

    def _send(self, h: BaseHTTPRequestHandler, body: dict, reply: Reply) -> None:
        usage = None
        if isinstance(reply, Error):
            status, headers = reply.status, reply.headers
            data = json.dumps({"error": {"message": reply.message, "type": "error", "code": str(status)}}).encode()
        elif isinstance(reply, Raw):
            status, headers, data = reply.status, {}, reply.body
        elif body.get("stream"):
            with self._lock:
                self.log.append({"body": body, "status": 200, "text": reply, "usage": None})
            return self._stream(h, body, reply)
        else:
            obj = completion(body, reply)
            status, headers, data, usage = 200, {}, json.dumps(obj).encode(), obj["usage"]
        with self._lock:
            self.log.append({"body": body, "status": status, "text": reply if isinstance(reply, str) else None,
                             "usage": usage})
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _stream(self, h: BaseHTTPRequestHandler, body: dict, text: str) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model")}
        for i, word in enumerate(text.split(" ")):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            chunk = base | {"choices": [{"index": 0, "finish_reason": None, "delta": delta}]}
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            h.wfile.flush()
            if self.chunk_delay:
                time.sleep(self.chunk_delay)
        end = base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        h.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        h.wfile.flush()
