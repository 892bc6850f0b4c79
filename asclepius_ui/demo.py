"""The demo checkpoints: tiny models the project trains itself, so the app works with no downloads.

``assets/demo-model`` is the toy run's model after instruction fine-tuning (the chat's default);
``assets/demo-model-base`` is the same run before fine-tuning, the second contender that lets compare mode
work out of the box. Their ``asclepius_demo.json`` markers carry the measured held-out exact match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path, PureWindowsPath

from .engines.base import DEMO_MARKER

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHIPPED = ASSETS / "demo-model"
SHIPPED_BASE = ASSETS / "demo-model-base"


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


def base_model_path() -> Path | None:
    """The shipped demo model before instruction fine-tuning, if present."""
    return SHIPPED_BASE if is_demo_folder(SHIPPED_BASE) else None


def model_name(model: str | Path) -> str:
    """The name pages, answer footers, exports and plots show for ``model``: a local folder or file by its own name
    (never the path to it, which tells where someone keeps their files), a hub id or an endpoint's model as given."""
    text = str(model).rstrip("/\\")
    path = Path(text).expanduser()
    local = path.is_absolute() or text.startswith((".", "~")) or "\\" in text or path.exists()
    if "\\" in text:
        return PureWindowsPath(text).name or text
    return (path.name or text) if local else text


def distinct_name(name: str, path: str, taken: set[str] | dict) -> str:
    """``name`` (a model's shown name) made distinct from ``taken``: two folders both called ``model`` become
    ``run1/model`` and ``run2/model`` (the folder above it, still no full path), then a number if that is taken too.
    Ratings and votes are stored under this name, so two models must never share one."""
    if name not in taken:
        return name
    parts = Path(path).parts
    if len(parts) >= 2 and (longer := f"{parts[-2]}/{name}") not in taken:
        return longer
    n = 2
    while f"{name} #{n}" in taken:
        n += 1
    return f"{name} #{n}"


def model_path(engine) -> str:
    """Where ``engine``'s model was loaded from (its ``model_id`` is only the name)."""
    options = getattr(engine, "options", None)
    return str(getattr(options, "model", None) or engine.model_id)


def marker(model_id: str | Path) -> dict:
    """The demo marker of a model folder ({} when there is none or it cannot be read)."""
    try:
        return json.loads((Path(str(model_id)) / DEMO_MARKER).read_text())
    except (OSError, ValueError):
        return {}


def demo_score(engine) -> str:
    """The measured held-out exact match of a demo engine, as a phrase for the page ("" when unknown)."""
    m = marker(model_path(engine))
    em = m.get("heldout_exact_match")
    if em is None:
        return ""
    rows = m.get("heldout_rows")
    of = f" of {rows} questions" if rows else ""
    return (f"measured exact match on held-out notes in its training style: {em:.0%}{of} "
            "(`python -m train.toy` prints it)")


def display_name(name: str, engine) -> str:
    """A contender's name as revealed after a vote: a demo says which stage of training it is."""
    label = marker(model_path(engine)).get("label") if getattr(engine, "is_demo", False) else None
    return f"{name} ({label})" if label else name
