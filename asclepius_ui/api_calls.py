"""Calling an OpenAI-compatible chat-completions endpoint asynchronously: client, rate limit, retries with backoff.

Retries are ours (the client's own are off): 429, 5xx, 408/409, connection errors and malformed replies are retried
with exponential backoff and jitter, honouring the server's ``Retry-After``; 401/403/404 stop at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import openai

FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


class NoEndpointError(ValueError):
    """Neither a base URL nor an API key: there is nothing to call."""


class FatalAPIError(RuntimeError):
    """An error no retry can fix (bad key, no permission, unknown model): the run stops. ``cause`` is the error."""

    def __init__(self, message: str, cause: openai.APIStatusError):
        super().__init__(message)
        self.cause = cause


class MalformedReply(ValueError):
    """A 200 reply without usable content."""


def make_client(base_url: str | None = None, api_key: str | None = None, azure_endpoint: str | None = None,
                api_version: str | None = None, timeout: float = 120.0) -> openai.AsyncOpenAI:
    """An async OpenAI (or, with ``azure_endpoint``, Azure OpenAI) client with its own retries off.

    The key defaults to ``OPENAI_API_KEY`` (``AZURE_OPENAI_API_KEY`` for Azure), the URL to ``OPENAI_BASE_URL``.
    """
    if azure_endpoint:
        return openai.AsyncAzureOpenAI(azure_endpoint=azure_endpoint, api_version=api_version,
                                       api_key=api_key or os.environ.get("AZURE_OPENAI_API_KEY"),
                                       timeout=timeout, max_retries=0)
    key = api_key or os.environ.get("OPENAI_API_KEY")
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    if not key and not base_url:
        raise NoEndpointError("No endpoint: pass --base-url (e.g. a local vLLM server) or set OPENAI_API_KEY for "
                              "OpenAI.")
    return openai.AsyncOpenAI(base_url=base_url, api_key=key or "EMPTY", timeout=timeout, max_retries=0)


def retry_after(exc: Exception) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` in seconds or as a date), if any."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())


def retry_reason(exc: Exception) -> str | None:
    """A short reason when ``exc`` is worth retrying ("429", "503", "connection", "malformed" ...), else ``None``."""
    if isinstance(exc, openai.RateLimitError):
        return "429"
    if isinstance(exc, openai.APIStatusError) and (exc.status_code >= 500 or exc.status_code in (408, 409)):
        return str(exc.status_code)
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return "connection"
    if isinstance(exc, (openai.APIResponseValidationError, MalformedReply, json.JSONDecodeError)):
        return "malformed"
    return None


@dataclass
class RetryPolicy:
    """How often and how long to retry: ``base * 2**attempt`` seconds with jitter, at most ``cap``.

    A server's ``Retry-After`` is honoured up to ``retry_after_cap`` seconds.
    """

    max_retries: int = 6
    base: float = 1.0
    cap: float = 60.0
    retry_after_cap: float = 600.0

    def delay(self, exc: Exception, attempt: int, rng: random.Random) -> float:
        asked = retry_after(exc)
        if asked is not None:
            return min(asked, self.retry_after_cap)
        return min(self.cap, self.base * 2 ** attempt) * rng.uniform(0.5, 1.0)


class RateLimiter:
    """Sliding one-minute window over requests and tokens (``None`` = no limit)."""

    def __init__(self, rpm: float | None, tpm: float | None, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.rpm, self.tpm, self.window, self.clock = rpm, tpm, window, clock
        self.events: deque[list[float]] = deque()  # [time, tokens]
        self.lock = asyncio.Lock()

    def _wait_time(self, tokens: int, now: float) -> float:
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
            while (wait := self._wait_time(tokens, self.clock())) > 0:
                await asyncio.sleep(wait)
            entry = [self.clock(), float(tokens)]
            self.events.append(entry)
            return entry


def estimate_tokens(messages: Sequence[dict[str, str]], max_tokens: int) -> int:
    """Rough count for the tokens/min budget: ~4 characters a token plus the completion allowance."""
    return sum(len(m["content"]) for m in messages) // 4 + max_tokens


@dataclass
class Usage:
    """Requests sent (retries included), retries by reason, rows that failed, and tokens billed."""

    requests: int = 0
    retries: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def cost(self, price_in: float, price_out: float) -> float:
        """USD at ``price_in`` / ``price_out`` per 1k prompt / completion tokens."""
        return self.prompt_tokens / 1000 * price_in + self.completion_tokens / 1000 * price_out

    def summary(self, price_in: float, price_out: float) -> str:
        line = (f"requests={self.requests} retries={self.retries} failed={self.failed} "
                f"prompt_tokens={self.prompt_tokens} completion_tokens={self.completion_tokens} "
                f"total_tokens={self.prompt_tokens + self.completion_tokens} "
                f"cost=${self.cost(price_in, price_out):.4f}")
        if self.reasons:
            line += " retry_reasons=" + ",".join(f"{k}:{v}" for k, v in sorted(self.reasons.items()))
        return line


@dataclass
class ChatReply:
    text: str
    attempts: int
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def chat_with_retries(client: openai.AsyncOpenAI, messages: list[dict[str, str]], model: str, *,
                            max_tokens: int, policy: RetryPolicy, rng: random.Random, temperature: float = 0.0,
                            limiter: RateLimiter | None = None,
                            usage: Usage | None = None, require_content: bool = False) -> ChatReply:
    """One completion, retried under ``policy``; counts requests, retries and tokens into ``usage``.

    With ``require_content`` an empty reply is malformed (retried); without it, it is returned as "".
    Raises ``FatalAPIError`` for 401/403/404, else the last error once it is not retryable or retries run out.
    """
    usage = usage if usage is not None else Usage()
    estimate = estimate_tokens(messages, max_tokens)
    for attempt in range(policy.max_retries + 1):
        entry = await limiter.acquire(estimate) if limiter else None
        usage.requests += 1
        try:
            resp = await client.chat.completions.create(model=model, messages=messages, temperature=temperature,
                                                        max_tokens=max_tokens)
            choices = getattr(resp, "choices", None)
            content = choices[0].message.content if choices else None
            if require_content and (not isinstance(content, str) or not content.strip()):
                raise MalformedReply("reply without message content")
            reply = ChatReply(content or "", attempt + 1)
            if resp.usage is not None:
                reply.prompt_tokens = resp.usage.prompt_tokens or 0
                reply.completion_tokens = resp.usage.completion_tokens or 0
                usage.prompt_tokens += reply.prompt_tokens
                usage.completion_tokens += reply.completion_tokens
                if entry is not None:
                    entry[1] = float(resp.usage.total_tokens or estimate)
            return reply
        except FATAL as exc:
            raise FatalAPIError(f"{type(exc).__name__} ({exc.status_code}) from {str(client.base_url).rstrip('/')}: "
                                f"{exc.message}", exc) from exc
        except Exception as exc:
            reason = retry_reason(exc)
            if reason is None or attempt == policy.max_retries:
                raise
            usage.retries += 1
            usage.reasons[reason] += 1
            await asyncio.sleep(policy.delay(exc, attempt, rng))
    raise AssertionError("unreachable")
