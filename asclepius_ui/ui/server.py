"""Serve the app: security headers on every response, Host-header checking, login throttling, TLS, launch.

Gradio 6 builds a FastAPI (Starlette) app; ``launch(app_kwargs={"middleware": [...]})`` hands it our ASGI
middleware, so every response, including Gradio's own routes and files, goes through it.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import gradio as gr
from starlette.middleware import Middleware

from ..auth import LoginThrottle
from ..text_input import LIMITS
from .theme import LoginPage

# Nothing from another host, ever: scripts, styles, images, media, fonts and connections only from this origin.
# Gradio's page needs inline scripts/styles of its own; images may also be data:/blob: (plots, uploads).
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
       "worker-src 'self' blob:; frame-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'self'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"SAMEORIGIN"),
           (b"cross-origin-opener-policy", b"same-origin")]
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def host_of(header: str) -> str:
    """The host name of a ``Host`` header value, without port or IPv6 brackets, lower case."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def allowed_hosts(bind: str, extra: list[str] | tuple[str, ...] = ()) -> frozenset[str] | None:
    """Host names the server answers to: loopback names, the bound name and ``extra``; None = any (wildcard bind
    with no ``extra``: the operator chose every interface and ``--auth`` is then required)."""
    if bind in WILDCARDS and not extra:
        return None
    names = set(LOOPBACK_NAMES) | {h.lower() for h in extra}
    if bind not in WILDCARDS:
        names.add(bind.lower())
    return frozenset(names)


def _is_loopback_ip(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def _send_plain(send, status: int, text: str, headers: list | None = None) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *HEADERS, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """Refuse unknown ``Host`` headers (DNS rebinding), add the CSP and friends to every HTTP response."""

    def __init__(self, app, hosts: frozenset[str] | None = None):
        self.app = app
        self.hosts = hosts

    def _host_ok(self, scope) -> bool:
        if self.hosts is None:
            return True
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        name = host_of(raw)
        return name in self.hosts or _is_loopback_ip(name)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if not self._host_ok(scope):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _send_plain(send, 421, "Unknown Host header: this server answers only to its own names.")
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = dict(message, headers=[*message.get("headers", []),
                                                 *[(k, v) for k, v in HEADERS if k not in names]])
            await send(message)

        await self.app(scope, receive, send_with_headers)


class LoginThrottleMiddleware:
    """Throttle failed logins per user name and per client address (``POST /login``)."""

    def __init__(self, app, throttle: LoginThrottle):
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        form = parse_qs(body.decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0].strip()
        addr = (scope.get("client") or ("?", 0))[0]
        wait = self.throttle.wait(user, addr)
        if wait > 0:
            detail = json.dumps({"detail": f"Too many failed logins: try again in {int(wait) + 1} s."}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(int(wait) + 1)
                                                                                .encode()), *HEADERS]})
            return await send({"type": "http.response.body", "body": detail})
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def watch(message):
            if message["type"] == "http.response.start":
                if message["status"] == 200:
                    self.throttle.success(user, addr)
                elif message["status"] in (400, 401):
                    self.throttle.failure(user, addr)
            await send(message)

        await self.app(scope, replay, watch)


@dataclass
class ServerOptions:
    """How to serve: bind address, port, extra host names, TLS files, login throttling."""

    host: str = "127.0.0.1"
    port: int = 7860
    extra_hosts: list[str] = field(default_factory=list)
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    share: bool = False
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


def middleware(opts: ServerOptions) -> list[Middleware]:
    """The ASGI middleware every server of this app runs (outermost first)."""
    return [Middleware(SecurityMiddleware, hosts=allowed_hosts(opts.host, opts.extra_hosts)),
            Middleware(LoginThrottleMiddleware, throttle=opts.throttle), Middleware(LoginPage)]


def private_process() -> None:
    """Files this server writes (exports, reports, Gradio's copies of them) are readable by its user only, and
    Gradio's file cache lives in this process's private folder, removed when the server stops. Call before
    building the app (components read the cache folder when they are made)."""
    from .. import private_files

    os.umask(0o077)
    os.environ["GRADIO_TEMP_DIR"] = str(private_files.root() / "gradio")


def serve(demo: gr.Blocks, opts: ServerOptions, auth=None, block: bool = True, quiet: bool = False,
          concurrency: int = 4):
    """Queue and launch ``demo`` with the offline theme, security middleware and the options; returns launch's."""
    from .theme import CSS, HEAD, offline_theme

    return demo.queue(default_concurrency_limit=concurrency).launch(
        server_name=opts.host, server_port=opts.port, share=opts.share, auth=auth, theme=offline_theme(), css=CSS,
        head=HEAD, footer_links=[], show_error=True, ssr_mode=False, mcp_server=False, pwa=False, quiet=quiet,
        prevent_thread_lock=not block, ssl_certfile=opts.ssl_certfile, ssl_keyfile=opts.ssl_keyfile,
        ssl_verify=False if opts.ssl_certfile else True, max_file_size=LIMITS.upload_bytes,
        app_kwargs={"middleware": middleware(opts)})
