"""Data a page keeps in the browser and sends back, signed so the server knows it made it (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import json


def _canon(obj: object) -> object:
    """The value as it comes back from a browser: JavaScript has one number type, so 1.0 returns as 1."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_canon(v) for v in obj]
    return obj


def _mac(payload: object, key: str) -> str:
    body = json.dumps(_canon(payload), sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()


def sign(payload: object, key: str) -> dict:
    """``{"payload": payload, "mac": ...}`` for the page to keep."""
    return {"payload": payload, "mac": _mac(payload, key)}


def verify(signed: object, key: str) -> object | None:
    """The payload if ``signed`` is what ``sign`` made with ``key``, else None (missing, altered, foreign)."""
    if not isinstance(signed, dict) or "payload" not in signed or not isinstance(signed.get("mac"), str):
        return None
    return signed["payload"] if hmac.compare_digest(_mac(signed["payload"], key), signed["mac"]) else None
