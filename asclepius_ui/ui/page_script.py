"""The app's own JavaScript, served as one same-origin file (``asclepius.js``) that every page loads from <head>.

The Content-Security-Policy allows no inline script and no eval, so none of ours is inline or passed to Gradio as
``js=``/``js_on_load`` (Gradio runs those through ``Function``). Each piece binds by element id and is kept next to
the page it serves: the accessibility fixes (``theme``), Ctrl+Enter on the chat (``chat``), the study's drafts
(``study``).
"""

from __future__ import annotations

import functools

PATH = "asclepius.js"
# Relative, so the page finds it under any root path a reverse proxy serves the app at; deferred, so it runs once
# the page's body exists (on the login page, where it is written into <head>).
HEAD = f'<script src="{PATH}" defer></script>'


@functools.cache
def source() -> bytes:
    """The file: each page's piece in its own block, so one piece's names never meet another's."""
    from .chat import CTRL_ENTER
    from .study import DRAFTS
    from .theme import ACCESSIBILITY_JS

    return "\n".join(f"{{{piece}}}" for piece in (ACCESSIBILITY_JS, CTRL_ENTER, DRAFTS)).encode()


class PageScript:
    """ASGI middleware answering ``GET /asclepius.js`` (logged in or not: the login page loads it too)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or scope["path"] != f"/{PATH}":
            return await self.app(scope, receive, send)
        body = source()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/javascript; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-cache")]})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
