"""Every engine behind one interface: a backend registry (name -> module) and ``load_engine``.

A new backend is one module and one line in ``BACKENDS``. The module has ``load(options) -> Engine``,
``claims(options) -> bool`` (does ``--backend auto`` pick it for these options?) and an ``Options`` dataclass of
its own load options: each field with help becomes a command-line flag of every command that loads models
(``add_engine_arguments``), and ``LoadOptions.options_for(Options)`` hands them back to it. A backend whose flags
need more (the served model's endpoint flags) has ``add_arguments(parser, title)`` and ``options_from_args(args)``.
Backend modules import their heavy library inside ``load`` (so flags and ``--help`` are fast, and llama.cpp never
imports torch).
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

from ..errors import GenerationError, ModelLoadError, UnsupportedError
from ..flags import add_dataclass_arguments, flag_fields, values_from_args
from ..prompts import TEMPLATES
from .base import (
    DEMO_MARKER,
    DEVICES,
    PRECISIONS,
    PRESETS,
    Capabilities,
    Engine,
    GenerationResult,
    GenerationSettings,
    LoadOptions,
    Prompt,
    StreamUpdate,
)

# name -> module; ``--backend auto`` asks them in this order (transformers takes whatever is left).
BACKENDS: dict[str, str] = {
    "openai": "asclepius_ui.engines.openai",
    "llamacpp": "asclepius_ui.engines.llamacpp",
    "transformers": "asclepius_ui.engines.transformers",
}
BACKEND_TITLES = {"openai": "OpenAI-compatible server (vLLM, TGI, llama.cpp server)", "llamacpp": "llama.cpp (GGUF)"}

__all__ = ["BACKENDS", "DEMO_MARKER", "DEVICES", "PRECISIONS", "PRESETS", "Capabilities", "Engine",
           "GenerationError", "GenerationResult", "GenerationSettings", "LoadOptions", "ModelLoadError", "Prompt",
           "StreamUpdate", "UnsupportedError", "add_engine_arguments", "answer", "backend_module", "load_engine",
           "options_from_args", "pick_backend"]


def backend_module(name: str) -> ModuleType:
    """The module of backend ``name`` (light: its heavy library loads with its first model)."""
    return importlib.import_module(BACKENDS[name])


def pick_backend(options: LoadOptions) -> str:
    """The backend ``options.backend`` names; ``auto``: the first in ``BACKENDS`` that claims these options."""
    if options.backend != "auto":
        if options.backend not in BACKENDS:
            raise ModelLoadError(f"Unknown backend {options.backend!r}; choose one of auto, {', '.join(BACKENDS)}.")
        return options.backend
    return next(name for name in BACKENDS if backend_module(name).claims(options))


def load_engine(options: LoadOptions) -> Engine:
    """Load ``options.model`` with the backend it asks for; every failure becomes a ``ModelLoadError``.

    The shared options are checked here, once: the template, precision and device by name, and every backend
    option must belong to some backend.
    """
    if not options.model or not options.model.strip():
        raise ModelLoadError("No model given: pass --model with a Hugging Face id, a local folder or a .gguf file.")
    if options.template is not None and options.template not in TEMPLATES:
        raise ModelLoadError(f"Unknown template {options.template!r}; choose one of {', '.join(TEMPLATES)}.")
    if options.precision not in PRECISIONS:
        raise ModelLoadError(f"Unknown precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if options.device not in DEVICES:
        raise ModelLoadError(f"Unknown device {options.device!r}; choose one of {', '.join(DEVICES)}.")
    known = {f for name in BACKENDS for f in _field_names(backend_module(name).Options)}
    if unknown := sorted(set(options.backend_options) - known):
        raise ModelLoadError(f"Unknown load option(s) {', '.join(unknown)}.")
    name = pick_backend(options)
    try:
        module = backend_module(name)
        return module.load(options)
    except ImportError as exc:
        hint = " Install it with `pip install llama-cpp-python`." if name == "llamacpp" else ""
        raise ModelLoadError(f"The {name} backend is not usable here: {exc}.{hint}") from exc


def _field_names(cls) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


def answer(engine: Engine, note: str, question: str, settings: GenerationSettings | None = None) -> GenerationResult:
    """Answer ``question`` about ``note`` with the engine's template: the notebook entry point."""
    if not note.strip():
        raise GenerationError("The note is empty.")
    if not question.strip():
        raise GenerationError("The instruction is empty.")
    return engine.generate(engine.make_prompt(note, question), settings)


def add_engine_arguments(p: argparse.ArgumentParser, title: str = "model") -> argparse.ArgumentParser:
    """The model flags every command shares (app, eval.generate, bench): the shared ones here, then each backend's
    own, generated from its ``Options`` dataclass. One definition, one meaning."""
    m = p.add_argument_group(title)
    m.add_argument("--model", help="Hugging Face id, local folder, .gguf file, or (with --base-url) the served name")
    m.add_argument("--backend", choices=["auto", *BACKENDS], default="auto",
                   help="auto: openai with --base-url, llamacpp for a .gguf, transformers otherwise")
    m.add_argument("--template", choices=list(TEMPLATES), help="prompt template (default: from the registry)")
    m.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="transformers: auto|fp32|bf16|fp16 (or 8bit/4bit, same as the flags below)")
    q = m.add_mutually_exclusive_group()
    q.add_argument("--load-in-8bit", action="store_true", help="8-bit weights through bitsandbytes")
    q.add_argument("--load-in-4bit", action="store_true", help="4-bit nf4 weights through bitsandbytes")
    m.add_argument("--device", choices=list(DEVICES), default="auto")
    m.add_argument("--revision", help="hub revision (branch, tag or commit)")
    m.add_argument("--context-length", type=int,
                   help="cap the context: llama.cpp's KV cache, or a served model's context when the server does not "
                        "say it (default: the model's own)")
    for name in reversed(BACKENDS):  # transformers first, as before
        module, group = backend_module(name), f"{title}: {BACKEND_TITLES.get(name, name)}"
        if hasattr(module, "add_arguments"):  # a backend whose flags need more than its Options' fields
            module.add_arguments(p, group)
        elif flag_fields(module.Options):
            add_dataclass_arguments(p.add_argument_group(group), module.Options)
    return p


def options_from_args(args: argparse.Namespace, model: str | None = None) -> LoadOptions:
    """``LoadOptions`` from the flags of ``add_engine_arguments`` (``model`` overrides ``--model``)."""
    precision = "8bit" if args.load_in_8bit else "4bit" if args.load_in_4bit else args.precision
    backend = {}
    for name in BACKENDS:
        module = backend_module(name)
        backend.update(module.options_from_args(args) if hasattr(module, "options_from_args")
                       else values_from_args(args, module.Options))
    return LoadOptions(model=model if model is not None else (args.model or ""), precision=precision,
                       device=args.device, template=args.template, revision=args.revision, backend=args.backend,
                       context_length=args.context_length, **backend)
