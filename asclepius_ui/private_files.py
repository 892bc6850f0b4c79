"""Temporary files that hold patient data (exports, reports): private to this user and removed when done.

Each file lives in a fresh 0700 folder under one per-process root; ``release`` removes it, ``sweep`` removes those
older than a given age, and the whole root goes at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

_lock = threading.Lock()
_root: Path | None = None


def root() -> Path:
    """This process's private folder (0700), created on first use and removed at exit."""
    global _root
    with _lock:
        if _root is None or not _root.exists():
            _root = Path(tempfile.mkdtemp(prefix="asclepius-private-"))
            os.chmod(_root, 0o700)
            atexit.register(shutil.rmtree, _root, True)
        return _root


def new_folder(prefix: str = "f-") -> Path:
    """A fresh private folder for one export or report."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root()))


def release(path: str | Path) -> None:
    """Remove the folder holding ``path`` (a file made in a ``new_folder``) or the folder itself."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if folder.parent == root():
        shutil.rmtree(folder, ignore_errors=True)


def sweep(max_age_s: float) -> int:
    """Remove private folders older than ``max_age_s``; returns how many."""
    now, n = time.time(), 0
    for folder in root().iterdir():
        try:
            if now - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                n += 1
        except FileNotFoundError:
            continue
    return n
