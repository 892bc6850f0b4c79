"""Assemble the pages into one Gradio app."""

from __future__ import annotations

import gradio as gr

from . import admin, analysis, batch, chat, compare, study
from .context import AppContext

# (tab title, page module, needs the ratings database)
PAGES = [
    ("Chat", chat, False),
    ("Compare", compare, True),
    ("Batch", batch, False),
    ("Study", study, True),
    ("Admin", admin, True),
    ("Analysis", analysis, True),
]


def build_app(ctx: AppContext) -> gr.Blocks:
    """The whole app: one tab per page; the rating pages only when a database is configured."""
    with gr.Blocks(title="Asclepius Studio", analytics_enabled=False) as demo:
        gr.Markdown("# Asclepius Studio")
        with gr.Tabs():
            for title, page, needs_db in PAGES:
                if needs_db and ctx.storage is None:
                    continue
                with gr.Tab(title, id=page.__name__.rsplit(".", 1)[-1]):
                    page.build(ctx)
    return demo
