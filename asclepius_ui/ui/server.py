"""Serve the app: same-origin only, bounded bodies, security headers, Host checking, login throttling, TLS, launch.

Gradio 6 builds a FastAPI (Starlette) app; ``launch(app_kwargs={"middleware": [...]})`` hands it our ASGI
middleware, so every request and response, including Gradio's own routes and files, goes through it. Gradio adds
a CORS middleware of its own that echoes other origins; ``_same_origin_only`` (the app's lifespan) takes it out
before the first request, so no response ever carries ``Access-Control-Allow-*``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import signal
import threading
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie

import gradio as gr
from starlette.middleware import Middleware

from ..auth import LOGIN_ATTEMPT, LoginAttempt, LoginThrottle, throttled_check
from ..text_input import LIMITS
from .asgi import Headers, rewrite_whole
from .page_script import PageScript
from .path_mask import PathMask
from .theme import LoginPage

# Nothing from another host, ever: scripts, styles, images, media, fonts and connections only from this origin.
# No inline script and no eval: the app's page carries the sha256 hash of each inline script Gradio writes into it
# (``InlineScriptHashes``), our own JavaScript is one same-origin file (``page_script``). Styles may be inline
# (Gradio's components set style attributes); images may also be data:/blob: (plots, uploads).
CSP_DIRECTIVES = ("default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'",
                  "img-src 'self' data: blob:", "media-src 'self' data: blob:", "font-src 'self' data:",
                  "connect-src 'self'", "worker-src 'self' blob:", "frame-src 'self'", "object-src 'none'",
                  "base-uri 'self'", "form-action 'self'", "frame-ancestors 'self'")


def csp(script_hashes: list[str] | tuple[str, ...] = ()) -> str:
    """The Content-Security-Policy, allowing also the inline scripts whose CSP hash sources are given."""
    return "; ".join(f"{d} {' '.join(script_hashes)}" if d == "script-src 'self'" and script_hashes else d
                     for d in CSP_DIRECTIVES)


CSP = csp()
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"SAMEORIGIN"),
           (b"cross-origin-opener-policy", b"same-origin")]
HSTS = b"max-age=31536000"
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
ANONYMOUS_BODY_BYTES = 8 * 1024  # a login form; nothing larger is read before the user is known
BODY_BYTES = max(8 * LIMITS.note_bytes, 8 * 1024 * 1024)  # a page event (notes, chat history); uploads excepted
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


def _split_host(value: str, scheme: str) -> tuple[str, int]:
    """(host name, port) of a ``Host`` value or an origin's netloc; a missing port is the scheme's default."""
    name = host_of(value)
    rest = value.strip().lower()
    rest = rest[rest.find("]") + 1:] if rest.startswith("[") else rest
    port = rest.rsplit(":", 1)[1] if rest.count(":") == 1 else ""
    try:
        return name, int(port) if port else DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return name, -1


def same_origin(origin: str, host: str) -> bool:
    """Whether the ``Origin`` header names the host this request was sent to (name and port; ``null`` never)."""
    scheme, sep, netloc = origin.strip().lower().partition("://")
    if not sep or not netloc or "/" in netloc or "@" in netloc:
        return False
    return _split_host(netloc, scheme) == _split_host(host, scheme)


def private_cookie(value: bytes, tls: bool) -> bytes:
    """A ``Set-Cookie`` value made first-party only: ``SameSite=Strict``, and ``Secure`` over TLS."""
    parts = [p.strip() for p in value.decode("latin-1").split(";")]
    keep = [p for p in parts if p and not p.lower().startswith("samesite") and (tls or p.lower() != "secure")]
    if tls and not any(p.lower() == "secure" for p in keep):
        keep.append("Secure")
    return "; ".join([*keep, "SameSite=Strict"]).encode("latin-1")


def _cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    jar = SimpleCookie()
    try:
        jar.load(headers.get(b"cookie", b"").decode("latin-1"))
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def logged_in(scope, headers: dict[bytes, bytes]) -> bool:
    """Whether the request needs no login (no ``auth``) or carries a session cookie of a logged-in user."""
    app = scope.get("app")
    if getattr(app, "auth", None) is None:
        return True
    tokens, cid = getattr(app, "tokens", {}), getattr(app, "cookie_id", "")
    jar = _cookies(headers)
    return any(jar.get(name) in tokens for name in (f"access-token-{cid}", f"access-token-unsecure-{cid}"))


class SecurityMiddleware:
    """Every request: a served ``Host`` (DNS rebinding), a same-origin ``Origin`` (no other site reads or writes
    through a logged-in browser), a bounded body (small until logged in), no ``X-Forwarded-Host`` naming another
    host. Every response: the CSP and friends, HSTS over TLS, first-party cookies, never ``Access-Control-*``."""

    def __init__(self, app, hosts: frozenset[str] | None = None, body_limit: int = 0,
                 anonymous_limit: int = ANONYMOUS_BODY_BYTES):
        self.app = app
        self.hosts = hosts
        self.body_limit = body_limit or BODY_BYTES
        self.anonymous_limit = anonymous_limit

    def _host_ok(self, name: str) -> bool:
        return self.hosts is None or name in self.hosts or _is_loopback_ip(name)

    def _refusal(self, scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        host = headers.get(b"host", b"").decode("latin-1")
        if not self._host_ok(host_of(host)):
            return 421, "Unknown Host header: this server answers only to its own names."
        origin = headers.get(b"origin")
        if origin is not None and not same_origin(origin.decode("latin-1"), host):
            return 403, "Cross-origin request refused: this server answers only to its own pages."
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        if site in ("cross-site", "same-site") and headers.get(b"sec-fetch-mode", b"") != b"navigate":
            return 403, "Cross-site request refused: this server answers only to its own pages."
        return None

    def _clean_forwarded_host(self, scope, headers: dict[bytes, bytes]) -> None:
        """Drop ``X-Forwarded-Host`` unless it names a served host (Gradio builds redirects from it)."""
        fwd = headers.get(b"x-forwarded-host")
        if fwd is None:
            return
        first = fwd.decode("latin-1").split(",")[0]
        if self.hosts is None or host_of(first) not in self.hosts:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"x-forwarded-host"]

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _send_plain(send, *refusal)
        self._clean_forwarded_host(scope, headers)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        tls = scope.get("scheme") == "https"
        extra = [(b"strict-transport-security", HSTS)] if tls else []
        limit = None
        if not logged_in(scope, headers):
            limit = self.anonymous_limit
        elif scope["path"].rstrip("/").rsplit("/", 1)[-1] != "upload":  # uploads: Gradio's max_file_size
            limit = self.body_limit
        if limit is not None:
            try:
                declared = int(headers.get(b"content-length", b"0") or 0)
            except ValueError:
                declared = limit + 1
            if declared > limit:
                return await _send_plain(send, 413, _too_large(limit), extra)
        started, over = False, False

        async def bounded_receive():
            nonlocal over
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                bounded_receive.seen += len(message.get("body", b""))
                if bounded_receive.seen > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        bounded_receive.seen = 0

        async def send_with_headers(message):
            nonlocal started
            if over:  # whatever the app answers to a body cut short, the client hears why
                if not started:
                    started = True
                    await _send_plain(send, 413, _too_large(limit), extra)
                return
            if message["type"] == "http.response.start":
                started = True
                kept = [(k, private_cookie(v, tls) if k.lower() == b"set-cookie" else v)
                        for k, v in message.get("headers", []) if not k.lower().startswith(b"access-control-")]
                names = {k.lower() for k, _ in kept}
                message = dict(message, headers=[*kept, *[(k, v) for k, v in (*HEADERS, *extra) if k not in names]])
            await send(message)

        await self.app(scope, bounded_receive, send_with_headers)
        if over and not started:
            await _send_plain(send, 413, _too_large(limit), extra)


def _too_large(limit: int) -> str:
    return f"Request body too large (limit {limit // 1024} KB; log in first, upload files with the upload button)."


class LoginThrottleMiddleware:
    """``POST /login``: refuse at once an address that failed too often; hand the address to the throttled
    credential check (``auth.throttled_check``, which sees every user name however the form was encoded) and turn
    the 400 of a throttled attempt into a 429 with ``Retry-After``."""

    def __init__(self, app, throttle: LoginThrottle):
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            return await self.app(scope, receive, send)
        attempt = LoginAttempt(address=(scope.get("client") or ("?", 0))[0])
        wait = self.throttle.wait_address(attempt.address)
        if wait > 0:
            return await _too_many(send, wait)
        token = LOGIN_ATTEMPT.set(attempt)
        swallow = False

        async def watch(message):
            nonlocal swallow
            if message["type"] == "http.response.start" and attempt.wait > 0:
                swallow = True
                return await _too_many(send, attempt.wait)
            if not swallow:
                await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            LOGIN_ATTEMPT.reset(token)


async def _too_many(send, wait: float) -> None:
    seconds = str(int(wait) + 1)
    body = json.dumps({"detail": f"Too many failed logins: try again in {seconds} s."}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", seconds.encode()), *HEADERS]})
    await send({"type": "http.response.body", "body": body})


INLINE_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.S | re.I)


def script_hashes(html: bytes) -> list[str]:
    """CSP hash sources (``'sha256-...'``) of the inline scripts of an HTML page, those without ``src``."""
    return [f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
            for attrs, body in INLINE_SCRIPT.findall(html) if b"src=" not in attrs.lower()]


class InlineScriptHashes:
    """ASGI middleware: the app's page (``GET /``, the app or its login form) gets a CSP that allows exactly the
    inline scripts in it (Gradio writes its config and a few loaders inline), by hash. No other response allows
    any inline script: an uploaded HTML file served back runs nothing."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in ("/", ""):
            return await self.app(scope, receive, send)

        def hashed(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
            headers = [(k, v) for k, v in headers if k.lower() != b"content-security-policy"]
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                headers.append((b"content-security-policy", csp(script_hashes(body)).encode()))
            return headers, body

        await self.app(scope, receive, rewrite_whole(send, hashed))


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
    trusted_proxies: list[str] = field(default_factory=list)  # whose X-Forwarded-For/-Proto are believed


def middleware(opts: ServerOptions) -> list[Middleware]:
    """The ASGI middleware every server of this app runs (outermost first)."""
    return [Middleware(SecurityMiddleware, hosts=allowed_hosts(opts.host, opts.extra_hosts)),
            Middleware(LoginThrottleMiddleware, throttle=opts.throttle), Middleware(PathMask),
            Middleware(InlineScriptHashes), Middleware(PageScript), Middleware(LoginPage)]


@contextlib.asynccontextmanager
async def _same_origin_only(app):
    """Before the first request: take out Gradio's CORS middleware (it grants other origins) and put ours
    outermost; Starlette builds the middleware stack again on the next request."""
    ours = (SecurityMiddleware, LoginThrottleMiddleware)
    stack = list(app.user_middleware)
    first = [m for m in stack if m.cls in ours]
    rest = [m for m in stack if m.cls not in ours and "CORS" not in getattr(m.cls, "__name__", "")]
    app.user_middleware[:] = first + rest
    app.middleware_stack = None
    yield


def private_process() -> None:
    """Files this server writes (exports, reports, Gradio's copies of them) are readable by its user only, and
    Gradio's file cache lives in this process's private folder, removed when the server stops (on SIGINT and
    SIGTERM too). Call before building the app (components read the cache folder when they are made)."""
    from .. import private_files

    os.umask(0o077)
    os.environ["GRADIO_TEMP_DIR"] = str(private_files.root() / "gradio")
    if threading.current_thread() is threading.main_thread():
        # A service manager stops with SIGTERM: end as Ctrl-C does, so the server closes and the private folder
        # (exports, reports, uploaded study files) is removed at exit instead of outliving the process.
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(demo: gr.Blocks, opts: ServerOptions, auth=None, block: bool = True, quiet: bool = False,
          concurrency: int = 4):
    """Queue and launch ``demo`` with the offline theme, security middleware and the options; returns launch's."""
    from .page_script import HEAD
    from .theme import CSS, offline_theme

    if callable(auth) and opts.throttle is not None:
        auth = throttled_check(auth, opts.throttle)
    # uvicorn rewrites the client address and scheme from X-Forwarded-For/-Proto of the peers named here only
    # (its default trusts loopback, which would let any local process pick the address the throttle sees).
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(opts.trusted_proxies)
    return demo.queue(default_concurrency_limit=concurrency).launch(
        server_name=opts.host, server_port=opts.port, share=opts.share, auth=auth, theme=offline_theme(), css=CSS,
        head=HEAD, footer_links=[], show_error=False, ssr_mode=False, mcp_server=False, pwa=False, quiet=quiet,
        prevent_thread_lock=not block, ssl_certfile=opts.ssl_certfile, ssl_keyfile=opts.ssl_keyfile,
        ssl_verify=False if opts.ssl_certfile else True, max_file_size=LIMITS.upload_bytes,
        app_kwargs={"middleware": middleware(opts), "lifespan": _same_origin_only})
