"""No server path reaches the browser: the private folder's real path (``/tmp/asclepius-private-…``, where Gradio
keeps uploads and the files it serves) is shown to clients as a fixed stand-in, and mapped back on the way in.

Gradio names every file by its server path: the upload answer, each file's URL (``…/file=PATH``) and the values of
events both ways. This ASGI middleware rewrites that one prefix and nothing else: in JSON and event-stream answers
(outbound), in request URLs and in the JSON bodies of event calls (inbound). File contents (uploads, downloads) are
never touched, and Gradio itself still sees real paths, so its checks (``file=`` stays inside its folders) are
unchanged.
"""

from __future__ import annotations

import functools
import os

from .. import private_files
from .asgi import rewrite_whole

ALIAS = b"/asclepius-files"  # what clients see instead of the private folder (no such folder on any system)
UPLOADS = b"/asclepius-uploads"  # ... instead of Gradio's file folder, where it is not inside the private one


def folders() -> list[tuple[bytes, bytes]]:
    """(real path, stand-in) pairs: the private folder, and Gradio's own if it lies elsewhere (an app built
    without ``server.private_process``); each as written and with links resolved, where those differ."""
    from gradio.utils import get_upload_folder

    return _pairs(str(private_files.root()), str(get_upload_folder()))


@functools.cache
def _pairs(private: str, gradio: str) -> list[tuple[bytes, bytes]]:
    """``folders`` for these two folders (worked out once: every request asks)."""
    root, uploads = os.path.abspath(private), os.path.abspath(gradio)
    pairs = [] if os.path.commonpath([root, uploads]) == root else [(uploads, UPLOADS)]
    pairs.append((root, ALIAS))
    spelled = {(os.path.realpath(p), a) for p, a in pairs} - set(pairs)
    return [(p.encode(), a) for p, a in [*pairs, *spelled]]


def outward(data: bytes, pairs: list[tuple[bytes, bytes]]) -> bytes:
    """``data`` with each real folder's path replaced by its stand-in."""
    for real, alias in pairs:
        if real in data:
            data = data.replace(real, alias)
    return data


def inward(data: bytes, pairs: list[tuple[bytes, bytes]]) -> bytes:
    """``data`` with each stand-in (followed by ``/``) replaced by its real folder's path."""
    for real, alias in pairs:
        if alias + b"/" in data:
            data = data.replace(alias + b"/", real + b"/")
    return data


def _held_tail(data: bytes, pairs: list[tuple[bytes, bytes]]) -> int:
    """How many bytes at the end of ``data`` could be the start of a real path cut by a chunk boundary."""
    for n in range(min(max(len(r) for r, _ in pairs) - 1, len(data)), 0, -1):
        if any(r.startswith(data[-n:]) for r, _ in pairs):
            return n
    return 0


class PathMask:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        real = folders()
        path = scope.get("path", "")
        if "/asclepius-" in path:
            raw = scope.get("raw_path")
            scope = dict(scope, path=inward(path.encode(), real).decode(),
                         raw_path=inward(raw, real) if raw else raw)
        if b"/asclepius-" in (scope.get("query_string") or b""):
            scope = dict(scope, query_string=inward(scope["query_string"], real))
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        json_in = headers.get(b"content-type", b"").startswith(b"application/json")
        receive = self._inward_body(receive, real) if json_in else receive
        a_file = "file=" in scope.get("path", "")  # a file's own bytes go out as they are
        await self.app(scope, receive, send if a_file else self._outward(send, real))

    @staticmethod
    def _inward_body(receive, real: list[tuple[bytes, bytes]]):
        """The whole JSON body (bounded before this by ``SecurityMiddleware``), mapped back, as one message."""
        done = False

        async def whole():
            nonlocal done
            if done:
                return await receive()
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            done = True
            return {"type": "http.request", "body": inward(b"".join(chunks), real), "more_body": False}

        return whole

    @staticmethod
    def _outward(send, real: list[tuple[bytes, bytes]]):
        """Rewrite JSON answers whole (their length changes) and event streams chunk by chunk (a chunk that ends in
        what could be the start of a path keeps that tail for the next one)."""
        state: dict = {"send": None, "tail": b""}

        async def rewritten(message):
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if kind.startswith(b"application/json"):
                    state["send"] = rewrite_whole(send, lambda h, body: (h, outward(body, real)))
                    return await state["send"](message)
                if kind.startswith(b"text/event-stream"):
                    state["send"] = streamed
                    message = dict(message, headers=[(k, v) for k, v in headers if k.lower() != b"content-length"])
                return await send(message)
            return await (state["send"] or send)(message)

        async def streamed(message):
            if message["type"] != "http.response.body":
                return await send(message)
            data, more = outward(state["tail"] + message.get("body", b""), real), message.get("more_body", False)
            keep = _held_tail(data, real) if more else 0
            state["tail"] = data[len(data) - keep:] if keep else b""
            await send(dict(message, body=data[:len(data) - keep] if keep else data))

        return rewritten
