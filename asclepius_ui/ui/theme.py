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


def offline_theme() -> gr.themes.Base:
    return gr.themes.Default(font=SANS, font_mono=MONO)
