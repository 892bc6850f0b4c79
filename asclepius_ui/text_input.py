"""One normaliser for every text that enters the app (chat, compare, study import, API) and for numeric fields.

NUL bytes and lone UTF-16 surrogates cannot be stored in PostgreSQL text, tokenised, or written as UTF-8; they
are replaced by a visible marker, the same on every backend. Oversized text is refused with a clear message
instead of taking the server's memory. Numbers must be finite and in range.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from .errors import InputError

REPLACEMENT = "\ufffd"  # what a NUL or a lone surrogate becomes: visible, storable everywhere
_BAD = re.compile("[\x00\ud800-\udfff]")
MB = 1024 * 1024


def _env_bytes(name: str, default: int) -> int:
    try:
        return int(float(os.environ.get(name, "")) * MB) if os.environ.get(name) else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    """Size limits; ``ASCLEPIUS_MAX_NOTE_MB`` and ``ASCLEPIUS_MAX_UPLOAD_MB`` override the defaults."""

    note_bytes: int = 1 * MB
    upload_bytes: int = 200 * MB

    @classmethod
    def from_env(cls) -> Limits:
        return cls(_env_bytes("ASCLEPIUS_MAX_NOTE_MB", cls.note_bytes),
                   _env_bytes("ASCLEPIUS_MAX_UPLOAD_MB", cls.upload_bytes))


LIMITS = Limits.from_env()


def clean_text(value: object, what: str = "text", max_bytes: int | None = None) -> str:
    """``value`` as storable text: NUL and lone surrogates replaced by U+FFFD; too long raises ``InputError``.

    ``None`` is "". The size is checked on the UTF-8 encoding (what is stored and sent), before any other work.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    limit = LIMITS.note_bytes if max_bytes is None else max_bytes
    if len(text) > limit or len(text.encode("utf-8", "surrogatepass")) > limit:
        raise InputError(f"The {what} is too long ({_size(len(text.encode('utf-8', 'surrogatepass')))}; the limit "
                         f"is {_size(limit)}). Shorten it, or ask the administrator to raise the limit.")
    return _BAD.sub(REPLACEMENT, text)


def valid_chars(value: object) -> str:
    """``value`` as text with NUL and lone surrogates replaced (no size check): for what is stored or written."""
    if value is None:
        return ""
    return _BAD.sub(REPLACEMENT, value if isinstance(value, str) else str(value))


def had_replacements(before: object, after: str) -> bool:
    """Whether ``clean_text`` changed anything (to tell the user their text contained invalid characters)."""
    return isinstance(before, str) and before != after


def check_upload(size: int, what: str = "file") -> None:
    """Refuse an upload over the limit with a clear message."""
    if size > LIMITS.upload_bytes:
        raise InputError(f"The {what} is {_size(size)}; the upload limit is {_size(LIMITS.upload_bytes)}.")


def finite_number(value: object, what: str, lo: float | None = None, hi: float | None = None,
                  integer: bool = False) -> float | int:
    """``value`` as a finite number within ``[lo, hi]`` (an int when ``integer``); else ``InputError``."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number (got {str(value)[:40]!r}).") from None
    if not math.isfinite(x):
        raise InputError(f"{what} must be a finite number (got {value!r}).")
    if integer and x != int(x):
        raise InputError(f"{what} must be a whole number (got {x:g}).")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        bounds = f"from {lo:g} to {hi:g}" if lo is not None and hi is not None else \
            f"at least {lo:g}" if lo is not None else f"at most {hi:g}"
        raise InputError(f"{what} must be {bounds} (got {x:g}).")
    return int(x) if integer else x


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB / 10 else f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"
