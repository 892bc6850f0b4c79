"""Every call to an OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, TGI): settings, client, limits, flags.

One settings dataclass (``EndpointSettings``), one client factory (``make_client``, sync or async), the openai
SDK's own retries (429, 408/409, 5xx and connection errors, honouring ``Retry-After``/``retry-after-ms``),
tenacity for 200 replies without usable content, one rate limiter with an injectable clock, and
``add_endpoint_arguments`` so every CLI takes the same flags with the same meaning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import openai
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from .errors import InputError, UserError
from .flags import add_dataclass_arguments, values_from_args

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
API_KEY_REFUSED = ("--api-key is not taken on the command line (it would end up in shell history and process "
                   "lists): put the key in an environment variable and name it with --api-key-env.")
FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError, openai.BadRequestError)


class NoEndpointError(InputError):
    """Neither a base URL nor an API key: there is nothing to call."""


class FatalAPIError(UserError):
    """An error no retry can fix (bad key, no permission, unknown model, bad request): the run stops."""

    def __init__(self, message: str, cause: openai.APIStatusError):
        super().__init__(message)
        self.cause = cause


class MalformedReply(ValueError):
    """A 200 reply without usable content (retried with tenacity)."""


MALFORMED = (MalformedReply, openai.APIResponseValidationError, json.JSONDecodeError)


DEFAULT_MAX_RETRIES = 4  # one default for the app's engines, the judge and synthesis


@dataclass
class EndpointSettings:
    """Where requests go and how hard to try: the one settings type for every OpenAI-compatible call (the app's
    engine and contenders, the judge, synthesis). Each field with help is a command-line flag (``flags``).

    The key is ``api_key`` when given (programmatic use only: the CLIs refuse ``--api-key``), else the value of
    the environment variable named ``api_key_env``. ``base_url`` falls back to ``OPENAI_BASE_URL``;
    ``azure_endpoint`` selects Azure OpenAI (key from ``AZURE_OPENAI_API_KEY`` unless ``api_key_env`` or
    ``api_key`` say otherwise). ``max_retries`` is the SDK's retry count for 429/5xx/connection errors;
    ``malformed_retries`` re-asks after a reply without content.
    """

    model: str = ""
    base_url: str | None = field(default=None, metadata={
        "help": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 for vLLM (default: $OPENAI_BASE_URL)"})
    api_key_env: str = field(default=DEFAULT_KEY_ENV, metadata={
        "metavar": "NAME", "help": f"NAME of the environment variable holding the API key (default {DEFAULT_KEY_ENV})"})
    api_key: str | None = field(default=None, repr=False)
    azure_endpoint: str | None = field(default=None, metadata={
        "help": "Azure OpenAI resource URL (then --model names the deployment)"})
    api_version: str = field(default="2024-06-01", metadata={"help": "Azure OpenAI API version"})
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})
    rpm: float | None = field(default=None, metadata={"help": "requests-per-minute limit (default: none)"})
    tpm: float | None = field(default=None, metadata={
        "help": "tokens-per-minute limit, estimated before and counted after each request (default: none)"})
    timeout: float = field(default=120.0, metadata={"help": "seconds per request"})
    max_retries: int = field(default=DEFAULT_MAX_RETRIES, metadata={
        "help": "retries of a 429/408/409/5xx/connection error (the SDK's, honouring Retry-After)"})
    malformed_retries: int = 2

    def key(self) -> str | None:
        """The API key to send, or ``None`` when none is configured."""
        if self.api_key:
            return self.api_key
        env = self.api_key_env
        if self.azure_endpoint and env == DEFAULT_KEY_ENV and not os.environ.get(env):
            env = "AZURE_OPENAI_API_KEY"
        return os.environ.get(env) or None

    def url(self) -> str | None:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None


@dataclass
class Usage:
    """Requests sent (SDK retries included), retries, error replies by status, rows that failed, tokens billed."""

    requests: int = 0
    retries: int = 0
    malformed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def cost(self, price_in: float, price_out: float) -> float:
        """USD at ``price_in`` / ``price_out`` per 1k prompt / completion tokens."""
        return self.prompt_tokens / 1000 * price_in + self.completion_tokens / 1000 * price_out

    def summary(self, price_in: float = 0.0, price_out: float = 0.0) -> str:
        line = (f"requests={self.requests} retries={self.retries} malformed={self.malformed} failed={self.failed} "
                f"prompt_tokens={self.prompt_tokens} completion_tokens={self.completion_tokens} "
                f"total_tokens={self.prompt_tokens + self.completion_tokens} "
                f"cost=${self.cost(price_in, price_out):.4f}")
        if self.statuses:
            line += " error_statuses=" + ",".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        return line


def _hooks(usage: Usage | None, asynchronous: bool) -> dict:
    """httpx event hooks that count every request sent and every error status received into ``usage``."""
    if usage is None:
        return {}

    def on_request(request) -> None:
        usage.requests += 1

    def on_response(response) -> None:
        if response.status_code >= 400:
            usage.statuses[str(response.status_code)] += 1

    if not asynchronous:
        return {"request": [on_request], "response": [on_response]}

    async def a_request(request) -> None:
        on_request(request)

    async def a_response(response) -> None:
        on_response(response)

    return {"request": [a_request], "response": [a_response]}


def make_client(settings: EndpointSettings, *, asynchronous: bool = True, usage: Usage | None = None):
    """An ``openai`` client (``AsyncOpenAI`` or ``OpenAI``; Azure with ``azure_endpoint``) with the SDK's retries.

    With ``usage``, every request and error status the client sees is counted into it. Raises ``NoEndpointError``
    when there is neither a URL nor a key.
    """
    key, url = settings.key(), settings.url()
    hooks = _hooks(usage, asynchronous)
    http = {}
    if hooks:
        http["http_client"] = (openai.DefaultAsyncHttpxClient if asynchronous else openai.DefaultHttpxClient)(
            event_hooks=hooks)
    common = dict(timeout=settings.timeout, max_retries=settings.max_retries, **http)
    if settings.azure_endpoint:
        cls = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
        return cls(azure_endpoint=settings.azure_endpoint, api_version=settings.api_version, api_key=key, **common)
    if not key and not url:
        raise NoEndpointError(f"No endpoint: pass --base-url (e.g. a local vLLM server) or set ${settings.api_key_env} "
                              "for OpenAI.")
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(base_url=url, api_key=key or "EMPTY", **common)


class RateLimiter:
    """Sliding window (one minute by default) over requests and tokens; ``None`` limits are off.

    ``clock`` and ``sleep`` are injectable, so tests run it on a fake clock without real waiting.
    """

    def __init__(self, rpm: float | None, tpm: float | None, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.rpm, self.tpm, self.window, self.clock, self.sleep = rpm, tpm, window, clock, sleep
        self.events: deque[list[float]] = deque()  # [time, tokens]
        self.lock = asyncio.Lock()
        self.thread_lock = threading.Lock()

    def wait_time(self, tokens: int, now: float) -> float:
        """Seconds until a request of ``tokens`` fits both limits (forgets events older than the window)."""
        while self.events and self.events[0][0] <= now - self.window:
            self.events.popleft()
        if not self.events:
            return 0.0
        waits = [0.0]
        if self.rpm and len(self.events) >= self.rpm:
            waits.append(self.events[len(self.events) - int(self.rpm)][0] + self.window - now)
        used = sum(e[1] for e in self.events)
        if self.tpm and used + tokens > self.tpm:
            for t, n in self.events:
                used -= n
                if used + tokens <= self.tpm:
                    waits.append(t + self.window - now)
                    break
            else:
                waits.append(self.events[-1][0] + self.window - now)
        return max(waits)

    async def acquire(self, tokens: int) -> list[float]:
        """Wait for room; returns the entry so the caller can replace the estimate with the real count."""
        async with self.lock:
            while (wait := self.wait_time(tokens, self.clock())) > 0:
                await self.sleep(wait)
            entry = [self.clock(), float(tokens)]
            self.events.append(entry)
            return entry


    def acquire_blocking(self, tokens: int, sleep: Callable[[float], None] = time.sleep) -> list[float]:
        """``acquire`` for threads (the engines' synchronous requests): waits for room, then records the request."""
        with self.thread_lock:
            while (wait := self.wait_time(tokens, self.clock())) > 0:
                sleep(wait)
            entry = [self.clock(), float(tokens)]
            self.events.append(entry)
            return entry


def limiter_for(settings: EndpointSettings, **kwargs) -> RateLimiter | None:
    """The rate limiter ``settings`` ask for, or ``None`` when neither ``rpm`` nor ``tpm`` is set."""
    return RateLimiter(settings.rpm, settings.tpm, **kwargs) if settings.rpm or settings.tpm else None


def estimate_tokens(messages: Sequence[dict[str, str]], max_tokens: int) -> int:
    """Rough count for the tokens/min budget: ~4 characters a token plus the completion allowance."""
    return sum(len(m["content"]) for m in messages) // 4 + max_tokens


@dataclass
class ChatReply:
    """A completion's text, the HTTP attempts it took (SDK retries and malformed re-asks included), its usage."""

    text: str
    attempts: int
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _fatal(exc: openai.APIStatusError, client) -> FatalAPIError:
    return FatalAPIError(f"{type(exc).__name__} ({exc.status_code}) from {str(client.base_url).rstrip('/')}: "
                         f"{exc.message}", exc)


async def complete(client: openai.AsyncOpenAI, messages: list[dict[str, str]], settings: EndpointSettings, *,
                   max_tokens: int, temperature: float = 0.0, limiter: RateLimiter | None = None,
                   usage: Usage | None = None, require_content: bool = False,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, **params) -> ChatReply:
    """One chat completion. The SDK retries transient errors; a malformed 200 reply is re-asked (tenacity).

    With ``require_content`` an empty reply is malformed; without it, it is returned as "". Raises
    ``FatalAPIError`` for 400/401/403/404, else the last error once retries run out.
    """
    usage = usage if usage is not None else Usage()
    estimate = estimate_tokens(messages, max_tokens)
    attempts = 0
    retrying = AsyncRetrying(stop=stop_after_attempt(settings.malformed_retries + 1),
                             wait=wait_exponential_jitter(initial=0.5, max=8.0),
                             retry=retry_if_exception_type(MALFORMED), sleep=sleep, reraise=True)
    async for attempt in retrying:
        with attempt:
            if attempts:
                usage.malformed += 1
                usage.retries += 1
            entry = await limiter.acquire(estimate) if limiter else None
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=settings.model, messages=messages, max_tokens=max_tokens, temperature=temperature, **params)
            except FATAL as exc:
                raise _fatal(exc, client) from exc
            attempts += raw.retries_taken + 1
            usage.retries += raw.retries_taken
            resp = raw.parse()
            if isinstance(resp, str):  # a body the SDK could not read as JSON
                raise MalformedReply("reply body is not JSON")
            choices = getattr(resp, "choices", None)
            content = choices[0].message.content if choices else None
            if choices is None or (require_content and (not isinstance(content, str) or not content.strip())):
                raise MalformedReply("reply without message content")
            reply = ChatReply(content or "", attempts)
            if resp.usage is not None:
                reply.prompt_tokens = resp.usage.prompt_tokens or 0
                reply.completion_tokens = resp.usage.completion_tokens or 0
                usage.prompt_tokens += reply.prompt_tokens
                usage.completion_tokens += reply.completion_tokens
                if entry is not None:
                    entry[1] = float(resp.usage.total_tokens or estimate)
            return reply
    raise AssertionError("unreachable")


# ----- command-line flags, the same in every CLI ----------------------------------------------------------------
def add_endpoint_arguments(parser: argparse.ArgumentParser, *, model: bool = True, model_required: bool = False,
                           model_default: str | None = None, model_aliases: Sequence[str] = (),
                           concurrency: int | None = None, prefix: str = "", cls: type = EndpointSettings,
                           skip: tuple[str, ...] = (), title: str = "endpoint (any OpenAI-compatible API)",
                           defaults: dict | None = None) -> argparse._ArgumentGroup:
    """Add the flags of ``cls``'s fields (``--base-url --api-key-env --concurrency --rpm --tpm --timeout
    --max-retries`` and Azure's two; ``cls`` may be a subclass with more) and ``--model`` to ``parser``;
    ``settings_from_args`` reads them back. ``prefix`` gives the same flags for a second endpoint
    (``--remote-base-url`` ...). A hidden ``--api-key`` exists only to be refused with a message (a key on the
    command line ends up in shell history and process lists). ``model=False`` leaves ``--model`` to the caller."""
    g = parser.add_argument_group(title)
    add_dataclass_arguments(g, cls, prefix=prefix, skip=skip)
    g.add_argument(f"--{prefix}api-key", dest=f"{prefix.replace('-', '_')}api_key",
                   help=argparse.SUPPRESS)  # refused with a message by settings_from_args
    if model:
        g.add_argument(f"--{prefix}model", *model_aliases, dest=f"{prefix.replace('-', '_')}model",
                       required=model_required, default=model_default,
                       help="model (or Azure deployment) name at the endpoint")
    changed = dict(defaults or {})
    if concurrency is not None:
        changed["concurrency"] = concurrency
    if changed:
        parser.set_defaults(**{prefix.replace("-", "_") + k: v for k, v in changed.items()})
    return g


def settings_from_args(args: argparse.Namespace, model: str | None = None, *, prefix: str = "",
                       cls: type = EndpointSettings, **extra) -> EndpointSettings:
    """``cls`` (``EndpointSettings`` or a subclass) from the flags ``add_endpoint_arguments`` added; checks them."""
    dest = prefix.replace("-", "_")
    values = values_from_args(args, cls, prefix=prefix)
    if getattr(args, dest + "api_key", None):
        flag = f"--{prefix}api-key"
        raise InputError(API_KEY_REFUSED.replace("--api-key is", f"{flag} is"))
    check_values(values, prefix)
    name = model if model is not None else (getattr(args, dest + "model", None) or "")
    return cls(model=name, **values, **extra)


def check_values(values: dict, prefix: str = "") -> None:
    """Raise ``InputError`` for endpoint values no request can use (flags named as the user typed them)."""
    def flag(name: str) -> str:
        return f"--{prefix}{name.replace('_', '-')}"

    for name, least in (("concurrency", 1), ("max_retries", 0)):
        if name in values and values[name] < least:
            raise InputError(f"{flag(name)} must be at least {least}.")
    for name in ("rpm", "tpm", "timeout"):
        value = values.get(name)
        if value is not None and value <= 0:
            raise InputError(f"{flag(name)} must be positive.")
    env = values.get("api_key_env")
    if env and not env.replace("_", "").isalnum():
        raise InputError(f"{flag('api_key_env')} takes the NAME of an environment variable, not {env!r}: put the "
                         "key in a variable and name that.")
    if env and env != DEFAULT_KEY_ENV and not os.environ.get(env):
        raise InputError(f"{flag('api_key_env')} {env}: that environment variable is not set.")
