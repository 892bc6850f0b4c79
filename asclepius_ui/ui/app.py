"""Assemble the pages into one Gradio app: one tab per page, shaped by the user's role, checked on every event."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math

import gradio as gr
from gradio.context import LocalContext

from ..errors import InputError
from ..text_input import clean_text
from . import pages
from .common import current_user, is_admin
from .context import AppContext

# What a researcher scripts with gradio_client; every other event is hidden from the API.
API_NAMES = frozenset({"ask", "compare", "vote", "batch", "rate", "study_next", "study_submit", "study_skip",
                       "prepare"})
NOT_ALLOWED = "This page is not available to your account: ask an administrator."


def may_use(ctx: AppContext, user: str, key: str, audience: str) -> bool:
    """Whether ``user`` may see and use page ``key``: admins everything; raters the ``--rater-pages``."""
    if is_admin(ctx, user):
        return True
    return audience == "rater" and key in ctx.rater_pages


class _Denied(Exception):
    pass


def _clean(value):
    """One incoming value at the boundary: text through ``clean_text``, numbers finite (``InputError`` if not)."""
    if isinstance(value, str):
        return clean_text(value, "text field")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"A number field holds {value!r}: enter a finite number.")
    return value


def _clean_all(args, kwargs):
    try:
        return [_clean(a) for a in args], {k: _clean(v) for k, v in kwargs.items()}
    except InputError as exc:
        raise gr.Error(str(exc)) from None


def _boundary(fn, ctx: AppContext, key: str, audience: str, on_load: bool, n_out: int):
    """``fn`` at the app's boundary: it refuses users who may not use the page (the request comes from Gradio's
    context, not an argument) and normalises every incoming text and number (``text_input``) before ``fn`` sees it.

    A page's own load event does nothing for them (its tab is hidden); any other event answers ``NOT_ALLOWED``.
    """
    nothing = gr.update() if n_out == 1 else [gr.update()] * n_out

    def check() -> None:
        request = LocalContext.request.get(None)
        if not may_use(ctx, current_user(request), key, audience):
            if on_load:
                raise _Denied
            raise gr.Error(NOT_ALLOWED)

    if inspect.isasyncgenfunction(fn):
        async def wrapper(*args, **kwargs):
            try:
                check()
            except _Denied:
                yield nothing
                return
            args, kwargs = _clean_all(args, kwargs)
            async for x in fn(*args, **kwargs):
                yield x
    elif inspect.iscoroutinefunction(fn):
        async def wrapper(*args, **kwargs):
            try:
                check()
            except _Denied:
                return nothing
            args, kwargs = _clean_all(args, kwargs)
            return await fn(*args, **kwargs)
    elif inspect.isgeneratorfunction(fn):
        def wrapper(*args, **kwargs):
            try:
                check()
            except _Denied:
                yield nothing
                return
            args, kwargs = _clean_all(args, kwargs)
            yield from fn(*args, **kwargs)
    else:
        def wrapper(*args, **kwargs):
            try:
                check()
            except _Denied:
                return nothing
            args, kwargs = _clean_all(args, kwargs)
            return fn(*args, **kwargs)
    return functools.wraps(fn)(wrapper)  # the same signature, so Gradio still injects gr.Request etc.


def build_app(ctx: AppContext) -> gr.Blocks:
    """The whole app: one tab per page (rating pages only with a database), each shown to the roles that may use it."""
    with gr.Blocks(title="Asclepius Studio", analytics_enabled=False) as demo:
        gr.Markdown("# Asclepius Studio", elem_id="app-title")
        tabs = []
        with gr.Tabs(elem_id="pages") as page_tabs:
            for page in pages.PAGES:
                if page.needs_db and ctx.storage is None:
                    continue
                key, audience = page.key, page.audience
                before = set(demo.fns)
                with gr.Tab(page.title, id=key, visible=ctx.users is None) as tab:
                    when_opened = page.module().build(ctx)  # may return a hook for its tab (compute on open)
                    if callable(when_opened):
                        when_opened(tab)
                for i in set(demo.fns) - before:
                    block_fn = demo.fns[i]
                    if block_fn.fn is not None:
                        on_load = any(event == "load" for _, event in block_fn.targets)
                        block_fn.fn = _boundary(block_fn.fn, ctx, key, audience, on_load, len(block_fn.outputs))
                tabs.append((tab, key, audience))

        def shape(request: gr.Request):
            """Each tab shown to whoever may use it, and the first of them open: a rater with only the Study page
            lands on it (hidden tabs start unselected, so without this the page would be blank)."""
            user = current_user(request)
            allowed = [may_use(ctx, user, key, audience) for _, key, audience in tabs]
            first = next((key for (_, key, _), ok in zip(tabs, allowed, strict=True) if ok), None)
            return [gr.update(selected=first) if first else gr.update(),
                    *[gr.update(visible=ok) for ok in allowed]]

        if ctx.users is not None:
            demo.load(shape, None, [page_tabs, *[t for t, _, _ in tabs]], show_progress="hidden")
    hide_internal_events(demo)
    demo.app_id = stable_app_id(demo)
    return demo


def stable_app_id(demo: gr.Blocks) -> int:
    """An id that stays the same across restarts of the same page (a hash of its config).

    Gradio gives every launch a random ``app_id``, and a page that reconnects to a server with another id is
    re-rendered empty: the answer on screen, and with it what the page keeps to rate it, would be gone after a
    restart. The same page served again keeps its id; a changed page gets a new one and is re-rendered as before.
    """
    config = {k: v for k, v in demo.get_config_file().items() if k != "app_id"}

    def name(o: object) -> str:  # callables in props (a State's delete callback): their name, not their address
        return getattr(o, "__qualname__", type(o).__qualname__)

    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=name).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits, as Gradio's own


def hide_internal_events(demo: gr.Blocks) -> None:
    """Only the named researcher actions (``API_NAMES``) are in the HTTP API; the page's own events are private."""
    for block_fn in demo.fns.values():
        if block_fn.api_name not in API_NAMES:
            block_fn.api_visibility = "private"
