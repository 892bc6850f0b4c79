"""The OpenAI-compatible backend: a model behind vLLM, TGI, llama.cpp's server, OpenAI or Azure.

Nothing is sent anywhere unless the user names an endpoint. For Asclepius the completions endpoint gets the exact
prompt bytes (``api_mode="completion"``, the default when this is the main engine); ``chat`` sends the formatted
prompt as one user message, for chat models used as compare contenders.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import GenerationError, ModelLoadError
from ..prompts import TEMPLATES
from ..tokenization import encode_prompt, tokenizer_spans
from .base import Capabilities, Engine, GenerationSettings, LoadOptions, StreamUpdate


@dataclass
class RemoteOptions:
    """Where the model is served. ``api_key``/``base_url`` fall back to ``$api_key_env``/OPENAI_BASE_URL."""

    model: str
    base_url: str | None = None
    api_key: str | None = None
    template: str = "asclepius"
    mode: str = "chat"
    timeout: float = 120.0
    max_retries: int = 2
    context_length: int = 8192
    api_key_env: str = "OPENAI_API_KEY"
    tokenizer: str | None = None  # a local tokenizer folder to count tokens with


@dataclass(eq=False)
class RemoteEngine(Engine):
    """A model served over HTTP with the engine interface."""

    options: RemoteOptions
    client: object = field(repr=False, default=None)
    backend = "openai"

    def __post_init__(self) -> None:
        from openai import OpenAI

        if self.options.template not in TEMPLATES:
            raise ModelLoadError(f"Unknown template {self.options.template!r}.")
        if self.options.mode not in ("chat", "completion"):
            raise ModelLoadError("mode must be 'chat' or 'completion'.")
        base_url = self.options.base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = self.options.api_key or os.environ.get(self.options.api_key_env) or "EMPTY"
        if self.client is None:
            self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=self.options.timeout,
                                 max_retries=self.options.max_retries)
        self._tokenizer = None
        if self.options.tokenizer:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.options.tokenizer)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"Could not load the tokenizer in {self.options.tokenizer}: {exc}") from exc
        self.capabilities = Capabilities(tokenizer=self._tokenizer is not None, beams=False, concurrent=True)
        self.notices = [] if self._tokenizer is not None else [
            f"{self.options.model} is served remotely and no tokenizer is known here: the token budget is unknown "
            "(pass --tokenizer DIR to count tokens)."]

    model_id = property(lambda self: self.options.model)
    template = property(lambda self: self.options.template)
    precision = property(lambda self: "remote")
    revision = property(lambda self: str(self.client.base_url))
    context_length = property(lambda self: self.options.context_length)

    def encode(self, prompt: str) -> list[int]:
        if self._tokenizer is None:
            return super().encode(prompt)
        return encode_prompt(self._tokenizer, prompt)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        if self._tokenizer is None:
            return super().token_spans(text)
        return tokenizer_spans(self._tokenizer, text)

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
        n_prompt = self.check_fits(prompt, settings) or 0
        start = time.perf_counter()
        text, pieces, last, first = "", 0, 0.0, None
        try:
            response = self._request(prompt, settings, stream=True)
            with response:
                for chunk in response:
                    piece = self._piece(chunk)
                    if piece:
                        text += piece
                        pieces += 1
                        if first is None:
                            first = time.perf_counter() - start
                    if stop_event.is_set():
                        break
                    now = time.perf_counter()
                    if piece and now - last >= min_interval:
                        last = now
                        yield StreamUpdate(text, pieces, now - start, prompt_tokens=n_prompt, first_token_s=first)
        except openai.APIError as exc:
            raise GenerationError(f"The endpoint answered with an error: {exc}") from exc
        except openai.OpenAIError as exc:
            raise GenerationError(f"Could not reach the endpoint: {exc}") from exc
        yield StreamUpdate(text, pieces, time.perf_counter() - start, done=True, stopped=stop_event.is_set(),
                           prompt_tokens=n_prompt, first_token_s=first)


def load(options: LoadOptions) -> RemoteEngine:
    """The main engine (or a contender) behind an OpenAI-compatible server: completions with the exact prompt."""
    if not options.model:
        raise ModelLoadError("--backend openai needs --model naming the served model.")
    return RemoteEngine(RemoteOptions(
        model=options.model, base_url=options.base_url, api_key=options.api_key,
        template=options.template or "asclepius", mode=options.api_mode, timeout=options.timeout,
        max_retries=options.max_retries,
        context_length=options.context_length or 8192, api_key_env=options.api_key_env,
        tokenizer=options.tokenizer))
