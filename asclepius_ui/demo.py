"""The demo checkpoint: a tiny model the project trains itself, so the app works with no downloads."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .engines.base import DEMO_MARKER

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "demo-model"


def cache_dir() -> Path:
    base = os.environ.get("ASCLEPIUS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "asclepius-studio")
    return Path(base) / "demo-model"


def is_demo_folder(path: Path) -> bool:
    return (path / DEMO_MARKER).exists() and (path / "config.json").exists()


def demo_model_path(build: Callable[[Path], object] | None = None) -> Path:
    """The shipped demo model, else a cached one, else ``build(folder)`` it now (the launcher passes
    ``train.toy.build_demo_model``: the training pipeline owns how it is made, and the core never imports it)."""
    for path in (SHIPPED, cache_dir()):
        if is_demo_folder(path):
            return path
    if build is None:
        raise FileNotFoundError("No demo model found; run `python -m train.toy --export-demo assets/demo-model`.")
    out = cache_dir()
    print(f"Building the demo model in {out} (first start only)…", flush=True)
    build(out)
    return out
