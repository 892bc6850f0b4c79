"""asclepius_ui.endpoints against the real openai client and a local OpenAI-compatible server; fake clocks."""

from __future__ import annotations

import argparse
import asyncio
import time

import openai
import pytest

from asclepius_ui import endpoints
from asclepius_ui.endpoints import EndpointSettings, RateLimiter, Usage
from asclepius_ui.errors import InputError

from .openai_server import Error, OpenAIServer, Raw

MESSAGES = [{"role": "user", "content": "hello"}]


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self):
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def parse(*argv: str, **kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    endpoints.add_endpoint_arguments(p, **kw)
    return p.parse_args(list(argv))


def test_the_same_flags_everywhere_with_their_defaults(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-from-env")
    s = endpoints.settings_from_args(parse("--base-url", "http://127.0.0.1:1/v1", "--api-key-env", "MY_KEY",
                                           "--model", "m", "--concurrency", "3", "--rpm", "60", "--tpm", "1000",
                                           "--timeout", "5", "--max-retries", "2"))
    assert (s.base_url, s.model, s.concurrency, s.rpm, s.tpm, s.timeout, s.max_retries) == (
        "http://127.0.0.1:1/v1", "m", 3, 60, 1000, 5, 2)
    assert s.key() == "sk-from-env"
    defaults = endpoints.settings_from_args(parse())
    assert (defaults.api_key_env, defaults.concurrency, defaults.rpm, defaults.tpm, defaults.max_retries) == (
        "OPENAI_API_KEY", 4, None, None, endpoints.DEFAULT_MAX_RETRIES)
    with pytest.raises(InputError, match="name it with --api-key-env"):  # refused, never silently dropped
        endpoints.settings_from_args(parse("--api-key", "sk-given"))
    explicit = EndpointSettings(api_key="sk-given", api_key_env="MY_KEY")  # programmatic use
    assert explicit.key() == "sk-given" and "sk-given" not in repr(explicit)


def test_the_app_engine_and_its_served_contender_take_the_judges_endpoint_flags():
    """One endpoint settings type, one definition of each flag: the app's served engine (--base-url ...) and its
    served contender (--remote-base-url ...) have the judge's flags with the judge's defaults."""
    from asclepius_ui.engines import add_engine_arguments, options_from_args
    from asclepius_ui.engines.openai import RemoteOptions
    from asclepius_ui.launch import add_arguments

    app = add_arguments(argparse.ArgumentParser())
    flags = {a.option_strings[0]: a.default for a in app._actions if a.option_strings}
    for name in ("base-url", "api-key-env", "timeout", "max-retries", "rpm", "tpm"):
        field = name.replace("-", "_")
        default = EndpointSettings.__dataclass_fields__[field].default
        assert flags[f"--{name}"] == flags[f"--remote-{name}"] == default
    assert flags["--max-retries"] == endpoints.DEFAULT_MAX_RETRIES
    args = add_engine_arguments(argparse.ArgumentParser()).parse_args(["--model", "m", "--base-url", "http://h/v1",
                                                                        "--max-retries", "1"])
    served = options_from_args(args).options_for(RemoteOptions)
    assert isinstance(served, EndpointSettings) and served.max_retries == 1 and served.base_url == "http://h/v1"


@pytest.mark.parametrize("argv,message", [
    (("--api-key-env", "sk-abc-123"), "takes the NAME"),
    (("--api-key", "sk-abc-123"), "name it with --api-key-env"),
    (("--api-key-env", "NOT_SET_ANYWHERE"), "is not set"),
    (("--concurrency", "0"), "--concurrency must be at least 1"),
    (("--rpm", "0"), "--rpm must be positive"),
])
def test_bad_flags_are_refused_with_a_message(argv, message):
    with pytest.raises(InputError, match=message):
        endpoints.settings_from_args(parse(*argv))


def test_no_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(endpoints.NoEndpointError, match="--base-url"):
        endpoints.make_client(EndpointSettings(model="m"))


def test_rate_limiter_on_a_fake_clock():
    clock = FakeClock()
    limiter = RateLimiter(rpm=2, tpm=None, window=60, clock=clock, sleep=clock.sleep)

    async def go():
        return [(await limiter.acquire(1))[0] for _ in range(5)]

    assert asyncio.run(go()) == [0.0, 0.0, 60.0, 60.0, 120.0]
    assert clock.waits == [60.0, 60.0]


def test_rate_limiter_tokens_window_arithmetic():
    lim = RateLimiter(rpm=2, tpm=100, window=60, clock=lambda: 0.0)
    assert lim.wait_time(10, 0.0) == 0
    lim.events.extend([[0.0, 10.0], [1.0, 10.0]])
    assert lim.wait_time(10, 2.0) == pytest.approx(58.0)  # third request waits for the first to age out
    lim.events.popleft()
    assert lim.wait_time(95, 2.0) == pytest.approx(59.0)  # 10 + 95 tokens > 100: wait for the second
    assert lim.wait_time(50, 2.0) == 0
    assert lim.wait_time(10, 61.5) == 0 and not lim.events


def test_sdk_retries_honour_retry_after_and_can_be_switched_off():
    faults = [Error(429, "slow down", {"retry-after-ms": "300"})]

    def responder(body):
        return faults.pop(0) if faults else "fine"

    with OpenAIServer(responder) as srv:
        usage = Usage()
        s = EndpointSettings(model="m", base_url=srv.base_url, max_retries=2)
        client = endpoints.make_client(s, usage=usage)
        start = time.monotonic()
        reply = asyncio.run(endpoints.complete(client, MESSAGES, s, max_tokens=5, usage=usage))
        assert reply.text == "fine" and reply.attempts == 2 and usage.retries == 1
        assert time.monotonic() - start >= 0.29, "the SDK waited as long as retry-after-ms asked"
        assert usage.requests == 2 and dict(usage.statuses) == {"429": 1}

        faults.append(Error(429, "slow down", {"retry-after-ms": "1"}))
        none = EndpointSettings(model="m", base_url=srv.base_url, max_retries=0)
        with pytest.raises(openai.RateLimitError):
            asyncio.run(endpoints.complete(endpoints.make_client(none), MESSAGES, none, max_tokens=5))


def test_malformed_replies_are_re_asked_on_an_injected_clock_then_raised():
    replies = [Raw(b'{"choices": ['), "", "ok", Raw(b"{"), Raw(b"{"), Raw(b"{")]

    def responder(body):
        return replies.pop(0)

    clock = FakeClock()
    with OpenAIServer(responder) as srv:
        s = EndpointSettings(model="m", base_url=srv.base_url, malformed_retries=2)
        client = endpoints.make_client(s)
        usage = Usage()
        reply = asyncio.run(endpoints.complete(client, MESSAGES, s, max_tokens=5, usage=usage,
                                               require_content=True, sleep=clock.sleep))
        assert reply.text == "ok" and reply.attempts == 3 and usage.malformed == 2
        assert len(clock.waits) == 2 and all(0.5 <= w <= 9 for w in clock.waits)
        with pytest.raises(endpoints.MALFORMED):
            asyncio.run(endpoints.complete(client, MESSAGES, s, max_tokens=5, sleep=clock.sleep))
        assert not replies


def test_fatal_errors_stop_at_once_with_a_message():
    with OpenAIServer(api_key="right") as srv:
        s = EndpointSettings(model="m", base_url=srv.base_url, api_key="wrong")
        with pytest.raises(endpoints.FatalAPIError, match=r"AuthenticationError \(401\)"):
            asyncio.run(endpoints.complete(endpoints.make_client(s), MESSAGES, s, max_tokens=5))
        assert len(srv.log) == 0 or all(e["status"] == 401 for e in srv.log)


def test_the_sync_client_uses_the_same_settings():
    with OpenAIServer(answer="synchronous reply", api_key="k") as srv:
        usage = Usage()
        client = endpoints.make_client(EndpointSettings(model="m", base_url=srv.base_url, api_key="k"),
                                       asynchronous=False, usage=usage)
        r = client.chat.completions.create(model="m", messages=MESSAGES)
        assert r.choices[0].message.content == "synchronous reply" and usage.requests == 1
        assert client.max_retries == endpoints.DEFAULT_MAX_RETRIES


def test_rate_limiter_in_threads_waits_on_its_clock():
    """The blocking form (the engines' requests from worker threads) obeys the same window, on a fake clock."""
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(rpm=2, tpm=None, clock=lambda: now[0])
    for _ in range(3):
        limiter.acquire_blocking(10, sleep=sleep)
    assert waits == [60.0] and now[0] == 60.0
