"""Asclepius Studio: ask a locally loaded clinical language model about a discharge summary.

Notebook use::

    from asclepius_ui import build_prompt, load_engine, LoadOptions, GenerationSettings, answer
    engine = load_engine(LoadOptions("starmpcc/Asclepius-Llama3-8B", precision="4bit"))
    print(answer(engine, note, "What medications was the patient discharged on?").text)
"""

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# bitsandbytes (which peft imports under transformers' trainer utilities) tries an optional CPU kernel from the
# `kernels` package on AVX512-BF16 CPUs and logs a warning at import when it is missing; its plain CPU path is used
# then (installing `kernels` would fetch code from the hub at run time). Its module logger is the switch it has.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

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
