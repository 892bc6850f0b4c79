"""The OpenAI-compatible backend: a model behind vLLM, TGI, llama.cpp's server, OpenAI or Azure.

Nothing is sent anywhere unless the user names an endpoint. For Asclepius the completions endpoint gets the exact
prompt bytes (``api_mode="completion"``, the default when this is the main engine); ``chat`` sends the formatted
prompt as one user message, for chat models used as compare contenders.

Token counts: at load the server is asked once what it offers (``probe_server``): its tokenize endpoint (vLLM and
llama.cpp's server: ``POST /tokenize``; llama-cpp-python's server: ``POST /extras/tokenize``) counts tokens exactly
as the completions endpoint will see them, and vLLM's ``/v1/models`` tells the served context (``max_model_len``).
Without a tokenize endpoint a local ``--tokenizer`` counts; without either the budget is unknown
(``capabilities.tokenizer`` is False and the page says so).

A server that does not say its context (llama-cpp-python's) is never assumed to have the largest: the context is
unknown (``context_known`` False; the registry's length, for a known model, is only an upper bound) and the budget
line says so. The server's refusal tells it: when an answer ends without finishing, a non-streaming request for one
token with the same prompt makes llama-cpp-python's server answer ``context_length_exceeded`` with its real limit;
the engine keeps that limit (the budget is corrected) and says in plain words why the note was not answered.

A prompt that fits while prompt + max new tokens does not is not refused by llama-cpp-python's server: it lowers
max_tokens to what is left of its context and ends the answer early ("length"). An answer that ends so before the
tokens asked for carries a notice in plain words (``StreamUpdate.notice``), and the engine learns the limit: from
the usage figures when the server reports them (prompt + answer tokens filled the context), else from the refusal
of a one-token request with a filler prompt as long as the prompt and the answer asked (no note text in it).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..endpoints import (
    API_KEY_REFUSED,
    EndpointSettings,
    add_endpoint_arguments,
    check_values,
    limiter_for,
    make_client,
)
from ..errors import GenerationError, InputError, ModelLoadError
from ..flags import values_from_args
from ..registry import resolve
from ..tokenization import encode_prompt, tokenizer_spans
from .base import Capabilities, Engine, GenerationSettings, LoadOptions, Prefilled, Progress, Prompt, Stop, StreamUpdate


@dataclass
class RemoteOptions(EndpointSettings):
    """The OpenAI-compatible backend's options: the endpoint (``EndpointSettings``, the one type every
    OpenAI-compatible call uses) plus how this engine talks to it. Fields with help are command-line flags."""

    api_mode: str = field(default="completion", metadata={
        "choices": ("completion", "chat"),
        "help": "completion: the exact prompt bytes (right for Asclepius); chat: one user message"})
    tokenizer: str | None = field(default=None, metadata={
        "help": "local tokenizer folder to count tokens when the server cannot"})
    remote_prefill: bool = field(default=False, metadata={
        "help": "send each note to the server (a one-token request) once the privacy guard has passed it, before "
                "the question, so the server's prefix cache (vLLM, llama.cpp's server) has read it when Ask comes"})
    template: str = "asclepius"
    context_length: int | None = None  # None: the server's if it says it, else unknown until its refusal tells it
    probe: bool = True  # ask the server once for its tokenize endpoint and context length


Options = RemoteOptions


def claims(options: LoadOptions) -> bool:
    """``--backend auto``: a base URL means a served model."""
    return bool(options.get("base_url"))


def add_arguments(parser, title: str, prefix: str = "", defaults: dict | None = None, model: bool = False) -> None:
    """This backend's flags: the endpoint's own (``add_endpoint_arguments``, one definition for every endpoint)
    plus how the engine talks to it; ``prefix`` gives them again for a second endpoint (``--remote-``), with its own
    ``--{prefix}model`` when ``model``."""
    add_endpoint_arguments(parser, model=model, cls=RemoteOptions, skip=("concurrency",), title=title, prefix=prefix,
                           defaults=defaults)


def options_from_args(args, prefix: str = "") -> dict:
    """The values of ``add_arguments``' flags by field name, checked (a key on the command line is refused)."""
    if getattr(args, prefix.replace("-", "_") + "api_key", None):
        raise InputError(API_KEY_REFUSED.replace("--api-key is", f"--{prefix}api-key is"))
    values = values_from_args(args, RemoteOptions, prefix=prefix, skip=("concurrency",))
    check_values(values, prefix)
    return values


# Tokenize endpoints, tried in this order: (style, path from the server root, request body for ``text``).
TOKENIZE_STYLES = {
    "vllm": ("/tokenize", lambda model, text: {"model": model, "prompt": text, "add_special_tokens": True}),
    "llama.cpp": ("/tokenize", lambda model, text: {"content": text, "add_special": True}),
    "llama-cpp-python": ("/extras/tokenize", lambda model, text: {"model": model, "input": text}),
}
PROBE_TIMEOUT = 5.0
# How servers state their context when they refuse a prompt: llama-cpp-python, vLLM and OpenAI ("maximum context
# length is N"), llama-cpp-python's own error ("exceed context window of N"), llama.cpp ("the context size (N)").
CONTEXT_IN_REFUSAL = [re.compile(p, re.IGNORECASE) for p in (
    r"maximum context length is (\d+)", r"exceed context window of (\d+)", r"context size \((\d+)\)")]
UNKNOWN_CONTEXT = ("The server does not say how many tokens {model} can read at once (its context), so the token "
                   "budget cannot check it{bound}. The first note it refuses as too long (or answers only in part) "
                   "tells the limit; or start the app with --context-length (the server's own setting, e.g. "
                   "llama-cpp-python's --n_ctx).")
LEARNED_CONTEXT = "The server reads at most {n} tokens at once (its context, learned from {source})."
CUT_SHORT = ("The server stopped the answer after {got} tokens of the {asked:,} asked: its context is probably full "
             "({why}). The answer may end mid-sentence. Shorten the note (“Truncate note to fit” keeps the part you "
             "choose) or lower max new tokens, then ask again.")


def context_in_refusal(text: str) -> int | None:
    """The context length a server's refusal states (``None`` when it states none)."""
    for pattern in CONTEXT_IN_REFUSAL:
        if m := pattern.search(text or ""):
            return int(m.group(1))
    return None


@dataclass(frozen=True)
class ServerInfo:
    """What the server told us at load: how to tokenize there (``None``: it cannot) and its context length."""

    tokenize: str | None = None
    context_length: int | None = None


def server_root(base_url: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000`` (where vLLM and llama.cpp put ``/tokenize``)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _tokens(response) -> list[int] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if isinstance(tokens, list) and all(isinstance(t, int) for t in tokens):
        return tokens
    return None


def probe_server(http, base_url: str, model: str, completion: bool = True) -> ServerInfo:
    """Ask the server once for its context length (``/v1/models``) and which tokenize endpoint it has.

    ``http`` is an ``httpx.Client`` carrying the API key. Every failure means "not offered", never an error.
    """
    import httpx

    context = None
    try:
        listing = http.get(f"{base_url.rstrip('/')}/models", timeout=PROBE_TIMEOUT)
        for entry in listing.json().get("data", []) if listing.status_code == 200 else []:
            if entry.get("id") == model:
                n = entry.get("max_model_len") or (entry.get("meta") or {}).get("n_ctx_train")
                context = int(n) if n else None
    except (httpx.HTTPError, ValueError, AttributeError, TypeError):
        pass
    style = None
    if completion:
        root = server_root(base_url)
        for name, (path, body) in TOKENIZE_STYLES.items():
            try:
                reply = http.post(root + path, json=body(model, "Hello"), timeout=PROBE_TIMEOUT)
            except httpx.HTTPError:
                continue
            if reply.status_code == 200 and _tokens(reply):
                style = name
                if context is None and name == "vllm":
                    context = (reply.json() or {}).get("max_model_len")
                break
    return ServerInfo(style, int(context) if context else None)


@dataclass(eq=False)
class RemoteEngine(Engine):
    """A model served over HTTP with the engine interface."""

    options: RemoteOptions
    client: object = field(repr=False, default=None)
    backend = "openai"

    def __post_init__(self) -> None:
        if self.options.api_mode not in ("chat", "completion"):
            raise ModelLoadError("api_mode must be 'chat' or 'completion'.")
        base_url = self.options.url()
        api_key = self.options.key() or "EMPTY"
        if self.client is None:
            self.client = make_client(replace(self.options, base_url=base_url), asynchronous=False)
        self._limiter = limiter_for(self.options)
        self._tokenizer = None
        self._http = None
        self.server = ServerInfo()
        if self.options.probe and base_url:  # only an endpoint the user named is asked
            import httpx

            self._http = httpx.Client(headers={"Authorization": f"Bearer {api_key}"}, timeout=self.options.timeout)
            self.server = probe_server(self._http, str(self.client.base_url), self.options.model,
                                       completion=self.options.api_mode == "completion")
        if self.options.tokenizer:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.options.tokenizer)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"Could not load the tokenizer in {self.options.tokenizer}: {exc}") from exc
        counts = self.server.tokenize is not None or self._tokenizer is not None
        self.capabilities = Capabilities(tokenizer=counts, beams=False, concurrent=True, remote=True,
                                         prefill=bool(self.options.remote_prefill))
        self.notices = []
        if not counts:
            self.notices.append(
                f"{self.options.model} is served remotely and neither the server nor a local tokenizer counts tokens "
                "here: the token budget is unknown (pass --tokenizer DIR to count tokens).")
        spec = resolve(self.options.model)
        self._bound = spec.context_length if spec.known else None  # the model's own: the server cannot give more
        self._context = int(self.options.context_length or self.server.context_length or 0) or None
        self.context_known = self._context is not None
        self._stated = bool(self.server.context_length) and not self.options.context_length  # said by the server
        self._reads_at_least = 0  # a prompt this long was answered: the context is at least this
        if not self.context_known and self.options.api_mode == "completion":
            bound = f" (this model reads at most {self._bound})" if self._bound else ""
            self.notices.append(UNKNOWN_CONTEXT.format(model=self.options.model, bound=bound))

    model_id = property(lambda self: self.options.model)
    template = property(lambda self: self.options.template)
    precision = property(lambda self: "remote")
    revision = property(lambda self: str(self.client.base_url))
    # Sizes the answer-length sliders; the fit rule reads ``context_limit`` (unknown stays unknown there).
    context_length = property(lambda self: self._context or self._bound or 4096)
    context_limit = property(lambda self: self._context if self.context_known else self._bound)

    def learn_context(self, n: int, source: str = "its refusal") -> None:
        """Keep the context the server stated (it wins over a guess or a wrong --context-length)."""
        self._context, self.context_known, self._stated = int(n), True, True
        self.notices = [m for m in self.notices if not m.startswith(("The server does not say", "The server reads"))]
        self.notices.append(LEARNED_CONTEXT.format(n=n, source=source))

    def probe_context(self, prompt: str) -> int | None:
        """Ask for one token, not streamed, with ``prompt``: a server refuses a prompt over its context with its
        limit (llama-cpp-python's streamed answers just end). The limit, if it stated one; learned."""
        return self._ask_one(prompt)[1]

    def _ask_one(self, prompt: str) -> tuple[bool, int | None]:
        """(whether the server answered ``prompt`` (one token, not streamed), the limit its refusal stated: learned)."""
        import openai

        try:
            self._request(prompt, GenerationSettings(max_new_tokens=1), stream=False)
        except openai.APIStatusError as exc:
            if n := context_in_refusal(str(exc)):
                self.learn_context(n)
            return False, n
        except openai.OpenAIError:
            return False, None
        return True, None

    def filler(self, n_tokens: int) -> str | None:
        """A prompt of at least ``n_tokens`` tokens as the server counts them, with nothing of any note in it
        (``None`` when nothing here counts tokens)."""
        text = "0 " * n_tokens
        for _ in range(3):
            count = self.count_tokens(text)
            if count is None:
                return None
            if count >= n_tokens:
                return text
            text += text
        return None

    def cut_short(self, n_prompt: int, produced: int, usage, settings: GenerationSettings) -> str:
        """The notice for an answer the server ended ("length") before ``settings.max_new_tokens``, else "".

        With the server's ``usage`` figures the answer's tokens are counted there, and prompt + answer is the
        context it filled. Without them (llama-cpp-python streams none) ``produced`` (the pieces streamed) can
        undercount (bytes of one character come as one piece): unless the server itself stated its limit, a filler
        prompt as long as prompt + answer asked makes it state it (llama-cpp-python shortens only when that is over
        its context, so it refuses the filler at once), and the answer was cut short when that was over the limit;
        a filler it answers shows the context had room (it costs one read of that prompt, once per length).
        """
        asked = int(settings.max_new_tokens)
        if usage is not None and getattr(usage, "completion_tokens", None) is not None:
            got, n_in = int(usage.completion_tokens), int(getattr(usage, "prompt_tokens", 0) or n_prompt)
            if got >= asked:
                return ""
            if n_in and (not self._stated or n_in + got < self._context):
                self.learn_context(n_in + got, "the usage figures of an answer it cut short")
            return self._cut_words(f"{got:,}", asked, n_in)
        if produced >= asked or (n_prompt and n_prompt + asked < self._reads_at_least):
            return ""
        if n_prompt and not self._stated and self.options.probe and (filler := self.filler(n_prompt + asked)):
            if self._ask_one(filler)[0]:  # the context had room for all that was asked: the pieces undercounted
                self._reads_at_least = max(self._reads_at_least, n_prompt + asked + 1)
                return ""
        if n_prompt and self.context_known:
            room = self._context - n_prompt
            return self._cut_words(f"{room:,}", asked, n_prompt) if room < asked else ""
        return self._cut_words(f"about {produced:,}", asked, 0)  # nothing here tells: the pieces are a guess

    def _cut_words(self, got: str, asked: int, n_prompt: int) -> str:
        why = (f"it reads at most {self._context:,} tokens at once, and this note with the question is "
               f"{n_prompt:,} tokens" if self.context_known and n_prompt
               else "it does not say how many tokens it reads at once")
        return CUT_SHORT.format(got=got, asked=asked, why=why)

    def refused(self, n_prompt: int, settings: GenerationSettings) -> GenerationError:
        """The error for a prompt the server refused as over its context ``self.context_length``, in plain words."""
        return GenerationError(
            f"The model's server can read at most {self._context:,} tokens at once, and this note with the question "
            f"is {n_prompt:,} tokens{f' (plus up to {settings.max_new_tokens:,} for the answer)' if n_prompt else ''}"
            ": it was not answered. Shorten the note (“Truncate note to fit” keeps the part you choose) or lower "
            "max new tokens, then ask again. The token budget now counts against the server's limit.")

    def encode(self, prompt: str) -> list[int]:
        """Prompt ids as the server sees them (its tokenize endpoint), else from the local tokenizer."""
        if self.server.tokenize is not None:
            return list(self._server_encode(prompt))
        if self._tokenizer is None:
            return super().encode(prompt)
        return encode_prompt(self._tokenizer, prompt)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - the page asks for the same prompt's count repeatedly
    def _server_encode(self, prompt: str) -> tuple[int, ...]:
        import httpx

        path, body = TOKENIZE_STYLES[self.server.tokenize]
        try:
            reply = self._http.post(server_root(str(self.client.base_url)) + path,
                                    json=body(self.options.model, prompt))
        except httpx.HTTPError as exc:
            raise GenerationError(f"Could not reach the server to count tokens: {exc}") from exc
        tokens = _tokens(reply) if reply.status_code == 200 else None
        if tokens is None:
            raise GenerationError(f"The server's tokenize endpoint answered {reply.status_code}: {reply.text[:300]}")
        return tuple(tokens)

    def _ids(self, text: str) -> tuple[int, ...] | None:
        """The prompt's ids, or ``None`` when nothing here can count (or the server is unreachable)."""
        if not self.capabilities.tokenizer:
            return None
        try:
            return tuple(self.encode(text))
        except GenerationError:
            return tuple(encode_prompt(self._tokenizer, text)) if self._tokenizer is not None else None

    def count_tokens(self, text: str) -> int | None:
        ids = self._ids(text)
        return None if ids is None else len(ids)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Token spans from the local tokenizer; with only the server's counts, the note is cut on characters."""
        if self._tokenizer is not None:
            return tokenizer_spans(self._tokenizer, text)
        if self.server.tokenize is not None:
            return [(i, i + 1) for i in range(len(text))]
        return super().token_spans(text)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def prefill(self, prefix: str, stop: Stop | None = None, progress: Progress | None = None) -> Prefilled:
        """A one-token completion over ``prefix`` (only with ``--remote-prefill``; the caller has passed the note
        through the privacy guard): a server with prefix caching then has the note's KV when the question comes."""
        import openai

        if not self.options.remote_prefill:
            return super().prefill(prefix, stop, progress)
        if stop is not None and stop.is_set():
            return Prefilled(0, 1)
        if self._limiter is not None:
            self._limiter.acquire_blocking(len(prefix) // 4 + 1)
        try:
            self._request(prefix, GenerationSettings(max_new_tokens=1), stream=False)
        except openai.OpenAIError as exc:
            raise GenerationError(f"Reading the note ahead on the server failed: {exc}") from exc
        if progress is not None:
            progress(1, 1)
        return Prefilled(1, 1)

    def _request(self, prompt: str, settings: GenerationSettings, stream: bool):
        self.check_settings(settings)
        kw = dict(model=self.options.model, max_tokens=int(settings.max_new_tokens), stream=stream,
                  temperature=float(settings.temperature) if settings.do_sample else 0.0)
        if settings.do_sample:
            kw["top_p"] = float(settings.top_p)
        if self.options.api_mode == "completion":
            # A self-hosted server's own sampler defaults (llama.cpp: repeat penalty 1.1, top-k 40, min-p 0.05)
            # would change the answer: say what the settings mean, in the names vLLM and llama.cpp read.
            penalty = float(settings.repetition_penalty)
            extra = {"repetition_penalty": penalty, "repeat_penalty": penalty}
            if settings.do_sample:
                extra.update(top_k=-1, min_p=0.0)
            kw["extra_body"] = extra
        if self.options.api_mode == "chat":
            return self.client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **kw)
        return self.client.completions.create(prompt=prompt, **kw)

    def _piece(self, chunk) -> str:
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        if self.options.api_mode == "chat":
            return getattr(choice.delta, "content", None) or ""
        return choice.text or ""

    def stream(self, prompt: str | Prompt, settings: GenerationSettings | None = None,
               stop_event: threading.Event | None = None, min_interval: float = 0.05) -> Iterator[StreamUpdate]:
        """Yield the growing answer from a streamed request; ``stop_event`` closes this request."""
        import openai

        settings = settings or GenerationSettings()
        stop_event = stop_event or threading.Event()
        fitted = self.fit(prompt, settings)
        prompt, n_prompt = fitted.text, fitted.n_tokens or 0
        if self._limiter is not None:  # one limiter for every request of this engine, across threads
            self._limiter.acquire_blocking((n_prompt or len(prompt) // 4) + settings.max_new_tokens)
        start = time.perf_counter()
        text, pieces, last, first, finish, usage = "", 0, 0.0, None, None, None
        try:
            response = self._request(prompt, settings, stream=True)
            with response:
                for chunk in response:
                    finish = next((c.finish_reason for c in chunk.choices or []
                                   if getattr(c, "finish_reason", None)), finish)
                    usage = getattr(chunk, "usage", None) or usage  # servers that report it (one chunk, at the end)
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
            if n := context_in_refusal(str(exc)):
                self.learn_context(n)
                raise self.refused(n_prompt, settings) from exc
            raise GenerationError(f"The endpoint answered with an error: {exc}") from exc
        except openai.OpenAIError as exc:
            raise GenerationError(f"Could not reach the endpoint: {exc}") from exc
        finished = finish is not None
        if not finished and not stop_event.is_set() and self.options.probe and self.probe_context(prompt):
            raise self.refused(n_prompt, settings)
        if not finished and not stop_event.is_set():
            # A server that fails after it started streaming (llama-cpp-python on a prompt over its context) just
            # ends the stream: never pass that off as a finished answer.
            raise GenerationError(f"The endpoint ended the answer without finishing it (after {pieces} pieces): the "
                                  "server failed mid-answer (e.g. the prompt is over its context) or dropped it for "
                                  "another request (llama-cpp-python's server does unless started with "
                                  "--interrupt_requests False). See the server's log.")
        seconds = time.perf_counter() - start
        notice = self.cut_short(n_prompt, pieces, usage, settings) if finish == "length" and not stop_event.is_set() \
            else ""
        yield StreamUpdate(text, pieces, seconds, done=True, stopped=stop_event.is_set(), prompt_tokens=n_prompt,
                           first_token_s=first, notice=notice)


def load(options: LoadOptions) -> RemoteEngine:
    """The main engine (or a contender) behind an OpenAI-compatible server: completions with the exact prompt."""
    if not options.model:
        raise ModelLoadError("--backend openai needs --model naming the served model.")
    own = options.options_for(RemoteOptions)
    return RemoteEngine(replace(own, model=options.model, template=options.template or "asclepius",
                                context_length=options.context_length))
