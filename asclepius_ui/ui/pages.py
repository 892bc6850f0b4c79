"""The table of pages: one row each (title, module, needs the ratings database, who may see it). The app builds its
tabs from it and ``--rater-pages`` takes its choices from it. Light on purpose: the launcher reads it before Gradio
is imported.

A new page is its view module ``ui/KEY.py`` (``build(ctx)``), its handlers ``ui/KEY_logic.py`` and one row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Page:
    """One tab. ``audience``: "rater" pages can be granted to raters with ``--rater-pages``; "admin" ones never."""

    title: str
    key: str  # the module under asclepius_ui.ui, and the name --rater-pages uses
    needs_db: bool
    audience: str

    def module(self) -> ModuleType:
        return importlib.import_module(f"{__package__}.{self.key}")


PAGES = (
    Page("Chat", "chat", False, "rater"),
    Page("Compare", "compare", True, "rater"),
    Page("Batch", "batch", False, "rater"),
    Page("Study", "study", True, "rater"),
    Page("Admin", "admin", True, "admin"),
    Page("Analysis", "analysis", True, "admin"),
)


def grantable() -> tuple[str, ...]:
    """The pages ``--rater-pages`` may name: those whose audience is "rater"."""
    return tuple(p.key for p in PAGES if p.audience == "rater")


def rater_pages(text: str) -> frozenset[str]:
    """The pages named by ``--rater-pages`` (admin pages are for admins only, always); ``ValueError`` for others."""
    names = {p.strip().lower() for p in (text or "").split(",") if p.strip()}
    unknown = sorted(names - set(grantable()))
    if unknown:
        raise ValueError(f"unknown page(s) {', '.join(unknown)}; choose from {', '.join(grantable())}")
    return frozenset(names)
