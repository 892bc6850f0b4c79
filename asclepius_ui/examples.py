"""The example notes shipped in assets/notes (synthetic, written for this project).

``demo_*.txt`` are held-out notes from the toy run, in the style the demo model was trained on; the
others are written like real discharge summaries, which the tiny demo model cannot handle.
"""

from __future__ import annotations

from pathlib import Path

NOTES_DIR = Path(__file__).resolve().parent.parent / "assets" / "notes"
BEYOND_DEMO = "beyond the demo model"


def example_notes() -> dict[str, str]:
    """Example name -> note text: the demo's own examples first, then by name."""
    if not NOTES_DIR.is_dir():
        return {}
    paths = sorted(NOTES_DIR.glob("*.txt"), key=lambda p: (not p.stem.startswith("demo_"), p.stem))
    return {p.stem.replace("_", " "): p.read_text(encoding="utf-8") for p in paths}


def for_demo(name: str) -> bool:
    """True for an example the demo model was trained to handle (held out from its training)."""
    return name.startswith("demo ")


def example_label(name: str, engine) -> str:
    """The dropdown label: with the demo model, examples it cannot handle say so."""
    if getattr(engine, "is_demo", False) and not for_demo(name):
        return f"{name} ({BEYOND_DEMO})"
    if getattr(engine, "is_demo", False):
        return f"{name} (the demo's style)"
    return name
