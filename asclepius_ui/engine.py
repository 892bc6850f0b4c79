"""Compatibility names: the engine interface lives in ``asclepius_ui.engines`` (base, backends, registry)."""

from .engines import *  # noqa: F403
