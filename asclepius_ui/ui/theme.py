"""An offline, accessible theme: system fonts only (the page asks no font host for anything), text and buttons at
WCAG AA contrast, and a small script (``ACCESSIBILITY_JS``, part of ``page_script``) for what Gradio's own markup gets
wrong in axe-core's eyes."""

from __future__ import annotations

import gradio as gr

from .asgi import Headers, rewrite_whole
from .page_script import HEAD

SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Helvetica", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]

CSS = """
.demo-banner {border-left: 4px solid #d97706; padding: 0.4em 0.8em; background: #fffbeb; color: #78350f;}
.notice {border-left: 4px solid #2563eb; padding: 0.4em 0.8em;}
.error-box {border-left: 4px solid #dc2626; padding: 0.4em 0.8em; color: #7f1d1d;}
.answer-stats {font-size: 0.85em; opacity: 0.8;}
/* The privacy guard's redacted copy (phi_guard.diff_html): what is removed, struck through, and what is sent */
.guard-diff {font-family: inherit; max-height: 24em; overflow: auto;}
.guard-diff del {background: #fee2e2; color: #7f1d1d;}
.guard-diff ins {background: #dcfce7; color: #14532d; text-decoration: none; font-weight: 600;}
/* The chat's own Clear button also resets the rating list; the chatbot's built-in trash icon would not. */
#answers button[aria-label="Clear"] {display: none;}
"""

# ----- Layout for the work at laptop size (1366x768 and up); colours and contrast live in CSS above -------------
# Chat: the answers column stays in view (sticky, scrolling on its own) beside a long note. Study: the note on one
# side, answers and scores on the other, each side scrolling on its own. Compare: answers and the vote in view.
LAYOUT_CSS = """
#app-title h1 {font-size: 1.5rem; margin: 0;}
/* Clips as Gradio's "overflow: hidden" does, without making the page's container a scroller (sticky needs that).
   Top level on purpose: Gradio keeps a top-level rule's own selector (it scopes rules under .contain). */
.gradio-container {overflow: clip !important;}
@media (min-width: 1000px) {
  #chat-side {position: sticky; top: 0; align-self: flex-start; max-height: 100vh; overflow-y: auto;
              flex-wrap: nowrap;}
  #chat-side > * {flex-shrink: 0;}
  #study-item > .column {max-height: calc(100vh - 1rem); overflow-y: auto; align-self: flex-start;
                          flex-wrap: nowrap;}
  #study-item > .column > * {flex-shrink: 0;}  /* a side scrolls; its blocks keep their height */
  #study-item {position: sticky; top: 0;}
}
"""
CSS += LAYOUT_CSS


# Gradio's empty file box is a plain <div> with an aria-label (axe: aria-prohibited-attr), its gallery's icon-only
# buttons can lack a name (button-name), and its login page has no <title> (document-title). This script, loaded
# in <head> of every page including the login page, gives them a role, a name and a title as they appear.
ACCESSIBILITY_JS = """
(() => {
  let queued = false;
  const fix = () => {
    queued = false;
    if (!document.title) document.title = "Asclepius Studio";
    document.querySelectorAll(".empty[aria-label]:not([role])").forEach((e) => e.setAttribute("role", "img"));
    document.querySelectorAll("button:not([aria-label]):not([aria-labelledby])").forEach((b) => {
      if (b.textContent.trim() || b.title) return;
      const img = b.querySelector("img[alt]");
      b.setAttribute("aria-label", img && img.alt ? img.alt : (b.className.includes("thumbnail") ? "Show figure"
                                                                                                   : "Button"));
    });
    // Gradio's login page (a password box and no tabs): no landmark, no first-level heading; give it both, once
    const password = document.querySelector("input[type=password]");
    const app = document.querySelector("gradio-app");
    if (password && app && !document.querySelector("[role=tab]")) {
      if (!document.querySelector("main, [role=main]")) app.setAttribute("role", "main");
      const h2 = password.closest(".panel, .wrap")?.querySelector("h2");
      if (h2 && !document.querySelector("h1")) {
        const h1 = document.createElement("h1");
        h1.textContent = "Asclepius Studio";
        h1.style.cssText = "font-size: 1.5em; font-weight: 600; margin: 0 0 0.4em 0;";
        h2.before(h1);
      }
    }
  };
  const later = () => { if (!queued) { queued = true; requestAnimationFrame(fix); } };
  new MutationObserver(later).observe(document.documentElement, {childList: true, subtree: true});
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fix); else fix();
})();
"""


class LoginPage:
    """ASGI middleware: Gradio serves its login page (``GET /`` before logging in) without the app's title, CSS or
    ``head``; this adds the page script's tag (``page_script.HEAD``) to that page, so it gets a title, a main
    landmark and a first-level heading."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in ("/", ""):
            return await self.app(scope, receive, send)

        def with_script(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
            if b'"auth_required":true' in body.replace(b" ", b""):
                body = body.replace(b"</head>", HEAD.encode() + b"</head>", 1)
            return headers, body

        await self.app(scope, receive, rewrite_whole(send, with_script))


def offline_theme() -> gr.themes.Base:
    """Gradio's default look with system fonts; primary buttons a darker orange (white on orange-600 is 2.8:1,
    on orange-700 5.2:1), Stop buttons white on red-700 (6.5:1), and subdued and placeholder text dark enough to
    read (4.5:1 or more)."""
    return gr.themes.Default(font=SANS, font_mono=MONO).set(
        button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
        button_primary_background_fill_dark="*primary_700", button_primary_background_fill_hover_dark="*primary_800",
        button_primary_text_color="white", button_primary_text_color_dark="white",
        button_primary_border_color="*primary_700", button_primary_border_color_dark="*primary_700",
        button_cancel_background_fill="#b91c1c", button_cancel_background_fill_hover="#991b1b",
        button_cancel_background_fill_dark="#b91c1c", button_cancel_background_fill_hover_dark="#991b1b",
        button_cancel_text_color="white", button_cancel_text_color_dark="white",
        button_cancel_border_color="#b91c1c", button_cancel_border_color_dark="#b91c1c",
        body_text_color_subdued="*neutral_600", body_text_color_subdued_dark="*neutral_300",
        input_placeholder_color="*neutral_500", input_placeholder_color_dark="*neutral_400")
