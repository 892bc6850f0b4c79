"""Assemble the pages into one Gradio app."""

from __future__ import annotations

import importlib

import gradio as gr

from .context import AppContext

# (tab title, module under asclepius_ui.ui, needs the ratings database)
PAGES = [
    ("Chat", "chat", False),
    ("Compare", "compare", True),
    ("Study", "study", True),
    ("Admin", "admin", True),
    ("Analysis", "analysis", True),
]


def _page(name: str):
    try:
        return importlib.import_module(f"asclepius_ui.ui.{name}")
    except ModuleNotFoundError as exc:  # a page not built yet; anything else is a real error
        if exc.name == f"asclepius_ui.ui.{name}":
            return None
        raise


def build_app(ctx: AppContext) -> gr.Blocks:
    """The whole app: one tab per page; rating pages only when a database is configured."""
    with gr.Blocks(title="Asclepius Studio", analytics_enabled=False) as demo:
        gr.Markdown("# Asclepius Studio")
        with gr.Tabs():
            for title, name, needs_db in PAGES:
                if needs_db and ctx.storage is None:
                    continue
                module = _page(name)
                if module is None:
                    continue
                with gr.Tab(title, id=name):
                    module.build(ctx)
    return demo
