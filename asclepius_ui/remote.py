"""Compatibility names: the OpenAI-compatible backend lives in ``asclepius_ui.engines.openai``."""

from .engines.openai import RemoteEngine, RemoteOptions  # noqa: F401
