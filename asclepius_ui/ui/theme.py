"""An offline theme: system fonts only, so the page asks no font host for anything."""

from __future__ import annotations

import gradio as gr

SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Helvetica", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]

CSS = """
.demo-banner {border-left: 4px solid #d97706; padding: 0.4em 0.8em; background: #fffbeb; color: #78350f;}
.notice {border-left: 4px solid #2563eb; padding: 0.4em 0.8em;}
.error-box {border-left: 4px solid #dc2626; padding: 0.4em 0.8em; color: #7f1d1d;}
.answer-stats {font-size: 0.85em; opacity: 0.8;}
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


def offline_theme() -> gr.themes.Base:
    return gr.themes.Default(font=SANS, font_mono=MONO)
