"""The engine's generation interface over an OpenAI-compatible endpoint (OpenAI, Azure, vLLM, TGI).

Nothing is sent anywhere unless the user names an endpoint: this is the only module that talks to one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .engine import GenerationError, GenerationResult, GenerationSettings, StreamUpdate
from .prompts import TEMPLATES, build_prompt


@dataclass
class RemoteOptions:
    """Where the model is served. ``api_key``/``base_url`` fall back to OPENAI_API_KEY/OPENAI_BASE_URL.

    ``mode="chat"`` sends the formatted prompt as one user message; ``mode="completion"`` sends it raw to
    /v1/completions, which is right for a base or Asclepius model behind vLLM or TGI.
    """

    model: str
    base_url: str | None = None
    api_key: str | None = None
    template: str = "asclepius"
    mode: str = "chat"
    timeout: float = 120.0
    max_retries: int = 2
    context_length: int = 8192


@dataclass
class RemoteEngine:
    """A model served over HTTP with the same ``stream``/``generate`` methods as ``Engine``."""

    options: RemoteOptions
    client: object = field(repr=False, default=None)

    def __post_init__(self) -> None:
        from openai import OpenAI

        if self.options.template not in TEMPLATES:
            raise GenerationError(f"Unknown template {self.options.template!r}.")
        if self.options.mode not in ("chat", "completion"):
            raise GenerationError("mode must be 'chat' or 'completion'.")
        base_url = self.options.base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = self.options.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        if self.client is None:
            self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=self.options.timeout,
                                 max_retries=self.options.max_retries)

    # Attributes the UI shows, named as on Engine.
    @property
    def model_id(self) -> str:
        return self.options.model

    @property
    def template(self) -> str:
        return self.options.template

    @property
    def precision_label(self) -> str:
        return "remote"

    @property
    def revision(self) -> str:
        return str(self.client.base_url)

    @property
    def context_length(self) -> int:
        return self.options.context_length

    @property
    def is_demo(self) -> bool:
        return False

    @property
    def notices(self) -> list[str]:
        return []

    def prompt(self, note: str, question: str) -> str:
        return build_prompt(note, question, self.options.template)

    def count_tokens(self, text: str) -> int:
        """An estimate (the remote tokenizer is unknown): about 4 characters a token."""
        return max(1, len(text) // 4)

    def _request(self, prompt: str, settings: GenerationSettings, stream: bool):
        settings.validate()
        kw = dict(model=self.options.model, max_tokens=int(settings.max_new_tokens), stream=stream,
                  temperature=float(settings.temperature) if settings.do_sample else 0.0)
        if settings.do_sample:
            kw["top_p"] = float(settings.top_p)
        if self.options.mode == "chat":
            return self.client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **kw)
        return self.client.completions.create(prompt=prompt, **kw)

    def _piece(self, chunk) -> str:
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        if self.options.mode == "chat":
            return getattr(choice.delta, "content", None) or ""
        return choice.text or ""

    def stream(self, prompt: str, settings: GenerationSettings | None = None,
               stop_event: threading.Event | None = None, min_interval: float = 0.05) -> Iterator[StreamUpdate]:
        """Yield the growing answer from a streamed request; ``stop_event`` closes this request."""
        import openai

        settings = settings or GenerationSettings()
        stop_event = stop_event or threading.Event()
        start = time.perf_counter()
        text, pieces, last = "", 0, 0.0
        try:
            response = self._request(prompt, settings, stream=True)
            with response:
                for chunk in response:
                    piece = self._piece(chunk)
                    if piece:
                        text += piece
                        pieces += 1
                    if stop_event.is_set():
                        break
                    now = time.perf_counter()
                    if piece and now - last >= min_interval:
                        last = now
                        yield StreamUpdate(text, pieces, now - start)
        except openai.APIError as exc:
            raise GenerationError(f"The endpoint answered with an error: {exc}") from exc
        except openai.OpenAIError as exc:
            raise GenerationError(f"Could not reach the endpoint: {exc}") from exc
        yield StreamUpdate(text, pieces, time.perf_counter() - start, done=True, stopped=stop_event.is_set())

    def generate(self, prompt: str, settings: GenerationSettings | None = None,
                 stop_event: threading.Event | None = None) -> GenerationResult:
        last = list(self.stream(prompt, settings, stop_event, min_interval=float("inf")))[-1]
        return GenerationResult(last.text, last.new_tokens, last.seconds, 0, last.stopped)
