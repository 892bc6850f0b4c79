"""Every engine behind one interface: a backend registry (name -> loader) and ``load_engine``.

A new backend is one module with ``load(options) -> Engine`` and one line in ``BACKENDS``. Loaders are imported
only when used, so choosing llama.cpp never imports torch and the OpenAI client never imports llama.cpp.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from ..errors import GenerationError, ModelLoadError, UnsupportedError
from ..prompts import TEMPLATES
from .base import (
    DEMO_MARKER,
    PRESETS,
    Capabilities,
    Engine,
    GenerationResult,
    GenerationSettings,
    LoadOptions,
    StreamUpdate,
)

BACKENDS: dict[str, str] = {
    "transformers": "asclepius_ui.engines.transformers",
    "llamacpp": "asclepius_ui.engines.llamacpp",
    "openai": "asclepius_ui.engines.openai",
}
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "8bit", "4bit")
DEVICES = ("auto", "cpu", "cuda")

__all__ = ["BACKENDS", "DEMO_MARKER", "DEVICES", "PRECISIONS", "PRESETS", "Capabilities", "Engine",
           "GenerationError", "GenerationResult", "GenerationSettings", "LoadOptions", "ModelLoadError",
           "StreamUpdate", "UnsupportedError", "add_engine_arguments", "answer", "load_engine", "options_from_args",
           "pick_backend"]


def pick_backend(options: LoadOptions) -> str:
    """``auto``: llama.cpp for a ``.gguf`` file (or ``gguf_file``), ``openai`` with a base URL, else transformers."""
    if options.backend != "auto":
        if options.backend not in BACKENDS:
            raise ModelLoadError(f"Unknown backend {options.backend!r}; choose one of auto, {', '.join(BACKENDS)}.")
        return options.backend
    if options.base_url:
        return "openai"
    if options.gguf_file or options.model.strip().lower().endswith(".gguf"):
        return "llamacpp"
    return "transformers"


def load_engine(options: LoadOptions) -> Engine:
    """Load ``options.model`` with the backend it asks for; every failure becomes a ``ModelLoadError``."""
    if not options.model or not options.model.strip():
        raise ModelLoadError("No model given: pass --model with a Hugging Face id, a local folder or a .gguf file.")
    if options.template is not None and options.template not in TEMPLATES:
        raise ModelLoadError(f"Unknown template {options.template!r}; choose one of {', '.join(TEMPLATES)}.")
    name = pick_backend(options)
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        hint = " Install it with `pip install llama-cpp-python`." if name == "llamacpp" else ""
        raise ModelLoadError(f"The {name} backend is not usable here: {exc}.{hint}") from exc
    return module.load(options)


def answer(engine: Engine, note: str, question: str, settings: GenerationSettings | None = None) -> GenerationResult:
    """Answer ``question`` about ``note`` with the engine's template: the notebook entry point."""
    if not note.strip():
        raise GenerationError("The note is empty.")
    if not question.strip():
        raise GenerationError("The instruction is empty.")
    return engine.generate(engine.prompt(note, question), settings)


def add_engine_arguments(p: argparse.ArgumentParser, title: str = "model") -> argparse.ArgumentParser:
    """The model flags every command shares (app, eval.generate, bench): one definition, one meaning."""
    m = p.add_argument_group(title)
    m.add_argument("--model", help="Hugging Face id, local folder, .gguf file, or (with --base-url) the served name")
    m.add_argument("--backend", choices=["auto", *BACKENDS], default="auto",
                   help="auto: llamacpp for a .gguf, openai with --base-url, transformers otherwise")
    m.add_argument("--template", choices=list(TEMPLATES), help="prompt template (default: from the registry)")
    m.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="transformers: auto|fp32|bf16|fp16 (or 8bit/4bit, same as the flags below)")
    q = m.add_mutually_exclusive_group()
    q.add_argument("--load-in-8bit", action="store_true", help="8-bit weights through bitsandbytes")
    q.add_argument("--load-in-4bit", action="store_true", help="4-bit nf4 weights through bitsandbytes")
    m.add_argument("--device", choices=list(DEVICES), default="auto")
    m.add_argument("--revision", help="hub revision (branch, tag or commit)")
    g = p.add_argument_group(f"{title}: llama.cpp (GGUF)")
    g.add_argument("--gguf-file", help="the .gguf file inside a hub repo or folder given with --model")
    g.add_argument("--threads", type=int, help="CPU threads for llama.cpp (default: its own choice)")
    g.add_argument("--n-gpu-layers", type=int, default=0, help="layers to offload to a GPU (-1: all)")
    g.add_argument("--draft-prompt-lookup", type=int, default=0, metavar="N",
                   help="prompt-lookup decoding for greedy answers, drafting N tokens copied from the note (e.g. 10; "
                        "on an f16 GGUF the same answers, 2-3x faster; on quantised GGUFs answers may differ "
                        "slightly; costs context x vocabulary x 4 bytes of memory)")
    o = p.add_argument_group(f"{title}: OpenAI-compatible server (vLLM, TGI, llama.cpp server)")
    o.add_argument("--base-url", help="e.g. http://127.0.0.1:8000/v1; implies --backend openai")
    o.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="name of the environment variable holding the API key (default OPENAI_API_KEY)")
    o.add_argument("--api-mode", choices=["completion", "chat"], default="completion",
                   help="completion: the exact prompt bytes (right for Asclepius); chat: one user message")
    o.add_argument("--tokenizer", help="local tokenizer folder to count tokens when the server cannot")
    o.add_argument("--context-length", type=int, help="the served model's context (default: from the registry)")
    o.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    o.add_argument("--max-retries", type=int, default=2,
                   help="retries of a 429/408/409/5xx/connection error (the SDK's, honouring Retry-After)")
    o.add_argument("--rpm", type=float, help="requests-per-minute limit (default: none)")
    o.add_argument("--tpm", type=float, help="tokens-per-minute limit: prompt + max new tokens (default: none)")
    return p


def options_from_args(args: argparse.Namespace, model: str | None = None) -> LoadOptions:
    """``LoadOptions`` from the flags of ``add_engine_arguments`` (``model`` overrides ``--model``)."""
    precision = "8bit" if args.load_in_8bit else "4bit" if args.load_in_4bit else args.precision
    return LoadOptions(model=model if model is not None else (args.model or ""), precision=precision,
                       device=args.device, template=args.template, revision=args.revision, backend=args.backend,
                       gguf_file=args.gguf_file, threads=args.threads, n_gpu_layers=args.n_gpu_layers,
                       draft_prompt_lookup=args.draft_prompt_lookup,
                       base_url=args.base_url, api_key_env=args.api_key_env, api_mode=args.api_mode,
                       tokenizer=args.tokenizer, context_length=args.context_length, timeout=args.timeout,
                       max_retries=args.max_retries, rpm=args.rpm, tpm=args.tpm)


def is_gguf(path: str) -> bool:
    return Path(path).suffix.lower() == ".gguf"
