"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions protocol, for the eval tests.

It stands in for a paid remote service only. Judge requests (non-streamed) are scored by reading the prompt:
each anonymous agent's answer is mapped back to its true model, and ``score_of(answer_text)`` decides the score,
so a test can prove that the shuffled order maps back to the right model. ``script`` queues per-instruction
actions (an HTTP error with headers, or a raw reply) that are served before the default behaviour. Streamed
requests (the remote engine) get an answer that echoes the instruction, as SSE chunks.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai

AGENT_BLOCK = re.compile(r"\[Agent (\d+) Answer Begin\]\n(.*?)\n\[Agent \1 Answer End\]", re.DOTALL)
INSTRUCTION = re.compile(r"\[Instruction Begin\]\n(.*?)\n\[Instruction End\]", re.DOTALL)


def instruction_of(prompt: str) -> str:
    m = INSTRUCTION.search(prompt)
    return m.group(1) if m else ""


class OpenAIStub:
    """The server; use as a context manager. ``base_url`` is ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, score_of: Callable[[str], int] | None = None, delay: float = 0.0):
        self.score_of = score_of or (lambda answer: 3)
        self.delay = delay
        self.script: dict[str, list[tuple]] = {}
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub._lock:
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    stub._handle(self, body)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def judge_calls(self, instruction: str | None = None) -> list[dict]:
        return [r for r in self.requests
                if not r["stream"] and (instruction is None or r["instruction"] == instruction)]

    # --- protocol -------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        if h.headers.get("Authorization") == "Bearer bad-key":
            return self._error(h, 401, "Incorrect API key provided.", {})
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
        instruction = instruction_of(prompt)
        with self._lock:
            action = self.script.get(instruction, []).pop(0) if self.script.get(instruction) else None
            self.requests.append({"time": time.monotonic(), "instruction": instruction, "prompt": prompt,
                                  "body": body, "stream": bool(body.get("stream")),
                                  "action": action[0] if action else "default"})
        if self.delay:
            time.sleep(self.delay)
        if action and action[0] == "status":
            _, status, headers = action
            return self._error(h, status, f"scripted {status}", headers)
        if body.get("stream"):
            return self._stream(h, body, f"Answer to: {instruction}")
        if action and action[0] == "reply":
            return self._json(h, body, action[1])
        blocks = AGENT_BLOCK.findall(prompt)
        reply = "\n".join(f"Agent {i}: {self.score_of(text)}" for i, text in blocks)
        return self._json(h, body, reply)

    def _error(self, h, status: int, message: str, headers: dict) -> None:
        data = json.dumps({"error": {"message": message, "type": "error", "code": str(status)}}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _json(self, h, body: dict, text: str) -> None:
        data = json.dumps({
            "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _stream(self, h, body: dict, text: str) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        pieces = re.findall(r"\S+\s*", text)
        for i, piece in enumerate(pieces):
            chunk = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": body.get("model", "stub"),
                     "choices": [{"index": 0, "delta": {"content": piece} if i else {"role": "assistant",
                                                                                       "content": piece},
                                  "finish_reason": None}]}
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
               "model": body.get("model", "stub"), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        h.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        h.wfile.flush()


def test_stub_speaks_the_protocol_to_the_real_client():
    with OpenAIStub(score_of=lambda a: 4 if "good" in a else 1) as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="k", max_retries=0)
        prompt = ("[Instruction Begin]\nq\n[Instruction End]\n[Agent 1 Answer Begin]\ngood\n[Agent 1 Answer End]\n"
                  "[Agent 2 Answer Begin]\nbad\n[Agent 2 Answer End]")
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
        assert r.choices[0].message.content == "Agent 1: 4\nAgent 2: 1"
        chunks = client.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": prompt}])
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Answer to: q"
        stub.script["q"] = [("status", 429, {"Retry-After": "0"})]
        try:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
            raise AssertionError("expected a 429")
        except openai.RateLimitError as exc:
            assert exc.response.headers["retry-after"] == "0"
