"""Asclepius Studio: ask a locally loaded clinical language model about a discharge summary.

Notebook use::

    from asclepius_ui import build_prompt, load_engine, LoadOptions, GenerationSettings, answer
    engine = load_engine(LoadOptions("starmpcc/Asclepius-Llama3-8B", precision="4bit"))
    print(answer(engine, note, "What medications was the patient discharged on?").text)
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from .prompts import TEMPLATES, build_prompt  # noqa: E402

_ENGINE_NAMES = {"Engine", "GenerationResult", "GenerationSettings", "LoadOptions", "ModelLoadError",
                 "GenerationError", "StreamUpdate", "answer", "load_engine", "PRESETS"}

__all__ = ["TEMPLATES", "build_prompt", *sorted(_ENGINE_NAMES)]


def __getattr__(name: str):
    """Import the engines only when first used (each backend imports its library, e.g. torch, when loaded)."""
    if name in _ENGINE_NAMES:
        from . import engines

        return getattr(engines, name)
    raise AttributeError(f"module 'asclepius_ui' has no attribute {name!r}")
