"""Helpers every page shares: who is logged in, their role, error boxes, and rendering untrusted text safely.

Untrusted text (notes, instructions, imported study cells, model answers, rater comments) is never handed to a
Markdown or HTML component as it is: ``safe_markdown`` escapes HTML and disarms image syntax, ``safe_html`` runs
the well-kept ``nh3`` (ammonia) sanitiser with no tag that loads anything. The Content-Security-Policy set by
``ui/server.py`` is the second wall: even a load that slipped through would be refused by the browser.
"""

from __future__ import annotations

import html
import logging
import re
import uuid

import gradio as gr
import nh3

from .. import phi_guard
from ..ask import GUARD_HOLD
from ..errors import UserError

LOCAL_USER = "local"
log = logging.getLogger("asclepius_ui")

KEEP = gr.update()  # an output left as it is


def session(request: gr.Request | None) -> str:
    """The browser session a request comes from (what read-ahead jobs are kept by)."""
    return getattr(request, "session_hash", None) or "page"


# Tags that only format text; none of them fetches anything (no img, svg, video, audio, iframe, object, link, style).
_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3",
         "h4", "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "sup",
         "table", "tbody", "td", "th", "thead", "tr", "u", "ul"}
_ATTRIBUTES = {"a": {"href", "title"}, "span": {"class"}, "div": {"class"}, "td": {"colspan"}, "th": {"colspan"}}
_IMAGE = re.compile(r"!(?=\[)")  # markdown image syntax ![alt](url) / ![alt][ref]


def current_user(request: gr.Request | None) -> str:
    """The logged-in name, or "local" when the app runs single-user without --auth."""
    return getattr(request, "username", None) or LOCAL_USER


def is_admin(ctx, user: str) -> bool:
    """Without --auth the single local user administers; with it, only the admin role."""
    return ctx.users is None or ctx.users.role(user) == "admin"


def escape_html(value: object) -> str:
    """Any server-side string (a model name, file name, id, message) as HTML text, quotes included: the one
    helper for putting such a string into HTML or into Markdown that may hold HTML."""
    return html.escape("" if value is None else str(value), quote=True)


def answer_notice(notice: str) -> str:
    """What the engine said about an answer (e.g. the server cut it short), to show with it; "" when nothing."""
    return f'<p class="answer-notice">⚠ {html.escape(notice)}</p>' if notice else ""


def error_box(text: str) -> str:
    """A red box around ``text`` (HTML-escaped: messages may quote user input)."""
    return f'<div class="error-box">{escape_html(text)}</div>' if text else ""


def internal_error(exc: BaseException, where: str = "") -> str:
    """Log ``exc`` with its traceback under a short id and return the error box the user sees."""
    eid = uuid.uuid4().hex[:8]
    log.error("internal error %s%s", eid, f" in {where}" if where else "", exc_info=exc)
    return error_box(f"Internal error {eid}: this is a bug, not your input. Nothing saved was lost; the details "
                     "are in the server log under this id.")


def user_message(exc: BaseException, where: str = "") -> str:
    """The error box for any exception: a ``UserError``'s own text, anything else as "internal error <id>"."""
    return error_box(str(exc)) if isinstance(exc, UserError) else internal_error(exc, where)


def safe_markdown(text: str | None) -> str:
    """``text`` for a Markdown component, shown as written: HTML escaped, images disarmed, nothing fetched."""
    text = html.escape(text or "", quote=False)
    return _IMAGE.sub(r"\\!", text)


def safe_html(fragment: str | None) -> str:
    """Sanitised HTML: formatting tags only, links only to http(s)/mailto and never loaded, no styles or scripts."""
    return nh3.clean(fragment or "", tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def one_line_html(fragment: str | None) -> str | None:
    """An HTML fragment with its newlines written ``&#10;`` (the same text in HTML, a line break in ``<pre>``)."""
    if fragment is None:
        return None
    return str(fragment).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "&#10;")


def html_block(value: str | None = None, **kwargs) -> gr.Markdown:
    """A box for an HTML fragment the server built (every piece of text in it escaped), shown as it is.

    Gradio's own ``gr.HTML`` evaluates its template with ``Function`` in the browser, which the CSP (no
    ``'unsafe-eval'``) refuses; so this is Gradio's Markdown box given each value as one raw HTML block: written on
    one line (``one_line_html``), so no blank line ends the block and nothing in it is read as Markdown. Like
    ``gr.HTML`` it keeps the fragment's attributes (the sanitiser would drop ``data-*`` and ``aria-label``): what
    goes in is built from escaped text only, and the CSP runs no inline script or handler. No LaTeX."""
    kwargs.setdefault("latex_delimiters", [])
    kwargs.setdefault("sanitize_html", False)
    box = gr.Markdown(one_line_html(value), **kwargs)
    markdown_postprocess = box.postprocess
    box.postprocess = lambda v: markdown_postprocess(one_line_html(v))  # every value a handler sends, too
    return box


# ----- requests every generating page shares: Stop before and while running, and the privacy guard's reset ----
def guard_reset(note: str) -> dict:
    """A changed note needs a new confirmation: the guard goes back to "Do not send yet" and names this note."""
    key = phi_guard.note_key(note or "")[:8]
    return gr.update(value=GUARD_HOLD, info=f"Applies to this note only (fingerprint {key}).")


QUEUED = "Queued behind an answer being generated: Stop cancels this question before it runs."


def new_request(ctx) -> tuple[str, str]:
    """Made when Ask is pressed, before the generation event is queued: the request id, and a notice (naming the
    request) when it will wait behind another generation."""
    rid = ctx.new_request()[0]
    busy = ctx.max_concurrent <= 1 and ctx.busy()
    return rid, f'{QUEUED}<span class="request-id" data-request="{rid[:8]}"></span>' if busy else ""


def stop(ctx, rid: str | None) -> str | None:
    """Stop ``rid``; a request still waiting in the queue is cancelled and says so. None: leave the status (also for
    a running request: its own stream says "Stopping…" and then "Stopped", in that order, where a "Stopping…" written
    here could land after the stream's last status and hide it)."""
    running = ctx.is_running(rid)
    if not rid or not ctx.stop(rid) or running:
        return None
    return "Stopped while waiting in the queue: it will not run."
