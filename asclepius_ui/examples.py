"""The example notes shipped in assets/notes (synthetic, written for this project)."""

from __future__ import annotations

from pathlib import Path

NOTES_DIR = Path(__file__).resolve().parent.parent / "assets" / "notes"


def example_notes() -> dict[str, str]:
    """Example name -> note text, sorted by name."""
    if not NOTES_DIR.is_dir():
        return {}
    return {p.stem.replace("_", " "): p.read_text(encoding="utf-8") for p in sorted(NOTES_DIR.glob("*.txt"))}
