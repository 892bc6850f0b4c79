"""train.synth against a real local HTTP server speaking the OpenAI chat-completions protocol.

The server is the only test double (for the paid remote API); the real ``openai`` client talks to it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import threading
import time

import httpx
import openai
import pytest

from asclepius_ui.api_calls import RateLimiter, RetryPolicy, retry_after
from train import synth
from train.synth import ClientSettings, clean_instruction, reject_reason

from .openai_server import Error, OpenAIServer, Raw, Reply, completion


def reply_text(body: dict) -> str:
    user = body["messages"][-1]["content"]
    if "Case report:" in user:
        case = user.split("Case report:\n", 1)[1]
        return f"```\nDISCHARGE SUMMARY\nHospital Course: pt with {case[:40]}\n```"
    if "Write one new instruction" in user:
        n = user.count("\n- ")
        return f'1. Instruction: "What was done on day {n}?"\nextra line'
    question = user.split("Instruction:\n", 1)[1].split("\n\n", 1)[0]
    if "ROBOT" in question:
        return "As an AI language model, I cannot give medical advice."
    if "REFUSE" in question:
        return "I'm sorry, but I can't help with that."
    if "ASKBACK" in question:
        return "Could you clarify which admission you mean?"
    return f"The answer to '{question}' is in the hospital course."


class Faults:
    """Responder: serves the queued ``faults`` first (429, 500, 503, 401, malformed ...), then normal answers."""

    def __init__(self):
        self.faults: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> Reply:
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault == "429":
            return Error(429, "rate limited", {"Retry-After": "0"})
        if fault in ("500", "503"):
            return Error(int(fault), "server error")
        if fault == "401":
            return Error(401, "bad key")
        if fault == "badjson":
            return Raw(b'{"id": "x", "choices": [')
        if fault == "nochoices":
            reply = completion(body, reply_text(body))
            reply.pop("choices")
            return Raw(json.dumps(reply).encode())
        return "" if fault == "empty" else reply_text(body)


def ok_usage(api: OpenAIServer) -> dict[str, int]:
    """Tokens the server billed for replies that had content."""
    served = [e["usage"] for e in api.log if e["text"]]
    return {"prompt": sum(u["prompt_tokens"] for u in served),
            "completion": sum(u["completion_tokens"] for u in served)}


@pytest.fixture
def api():
    with OpenAIServer(Faults()) as server:
        yield server


def settings(api: OpenAIServer, **kw) -> ClientSettings:
    base = dict(base_url=api.base_url, model="test-model", api_key="sk-test", concurrency=3, max_retries=4,
                backoff_base=0.01, backoff_max=0.05, timeout=10, max_tokens=64, price_in=0.5, price_out=1.5)
    return ClientSettings(**{**base, **kw})


CASES = [{"patient_uid": f"uid-{i}", "text": f"A {30 + i}-year-old man with chest pain number {i}."}
         for i in range(6)]


def test_notes_retry_on_429_5xx_and_malformed_then_resume(api, tmp_path):
    out = tmp_path / "notes.jsonl"
    api.responder.faults = ["429", "500", "badjson", "empty", "503", "nochoices"]
    res = asyncio.run(synth.synth_notes(CASES[:4], out, settings(api)))
    rows = synth.read_jsonl(out)
    assert sorted(r["note_id"] for r in rows) == [f"uid-{i}" for i in range(4)]
    assert all(r["note"].startswith("DISCHARGE SUMMARY") and "```" not in r["note"] for r in rows)
    assert res.written == 4 and res.usage.failed == 0
    assert res.usage.retries == 6 and len(api.requests) == 10
    assert res.usage.reasons["429"] == 1 and res.usage.reasons["malformed"] == 3
    billed = ok_usage(api)
    assert res.usage.prompt_tokens == billed["prompt"]
    assert res.usage.completion_tokens == billed["completion"]
    assert res.usage.cost(0.5, 1.5) == pytest.approx(billed["prompt"] / 1000 * 0.5 + billed["completion"] / 1000 * 1.5)

    # a crash left a torn line: the restart ignores it, skips finished rows and asks only for the rest
    with out.open("a") as f:
        f.write('{"note_id": "uid-4", "no')
    before = len(api.requests)
    res2 = asyncio.run(synth.synth_notes(CASES, out, settings(api)))
    assert res2.skipped == 4 and res2.written == 2
    assert len(api.requests) - before == 2
    assert sorted(r["note_id"] for r in synth.read_jsonl(out)) == [f"uid-{i}" for i in range(6)]


def test_note_prompt_states_the_papers_rules():
    text = synth.note_messages("CASE TEXT")[1]["content"]
    for phrase in ["Use only facts stated in the case report", "everyday", "do not define", "headings",
                   "grammatical slips", "not discharged", "summary of the hospital course", "CASE TEXT"]:
        assert phrase in text


def test_instructions_use_three_seeds_and_a_growing_pool(api, tmp_path):
    notes = [{"note_id": f"n{i}", "note": f"Note {i}: pt admitted with pneumonia."} for i in range(4)]
    out = tmp_path / "instructions.jsonl"
    res = asyncio.run(synth.synth_instructions(notes, out, settings(api, concurrency=1), tasks=["qa"]))
    assert res.written == 4
    # 3 seeds, then the pool grows by one question per finished request, capped at 2 shown
    shown = [r["messages"][-1]["content"].count("\n- ") for r in api.requests]
    assert shown == [3, 4, 5, 5]
    seeds = synth.load_seeds()["qa"]
    first = api.requests[0]["messages"][-1]["content"]
    assert sum(s in first for s in seeds) == 3 and "Note 0" in first and "Question answering" in first
    rows = synth.read_jsonl(out)
    assert rows[0] == {"key": "n0:qa", "note_id": "n0", "task": "qa", "note": notes[0]["note"],
                       "question": "What was done on day 3?", "model": "test-model"}


def test_seeds_are_five_per_task():
    seeds = synth.load_seeds()
    assert sorted(seeds) == sorted(synth.TASK_KEYS) and len(synth.TASK_KEYS) == 8
    assert all(len(v) == 5 and len(set(v)) == 5 for v in seeds.values())


def test_answers_filtered(api, tmp_path):
    qs = ["What was the diagnosis?", "ROBOT question", "REFUSE this", "ASKBACK please", "Which drug?"]
    rows = [{"note_id": f"n{i}", "task": "qa", "note": "Pt had CAP.", "question": q} for i, q in enumerate(qs)]
    out = tmp_path / "pairs.jsonl"
    res = asyncio.run(synth.synth_answers(rows, out, settings(api)))
    kept = synth.read_jsonl(out)
    rejected = synth.read_jsonl(synth.rejected_path(out))
    assert sorted(r["question"] for r in kept) == ["What was the diagnosis?", "Which drug?"]
    assert {r["question"]: r["reason"] for r in rejected} == {
        "ROBOT question": "mentions being an AI or language model",
        "REFUSE this": "refusal",
        "ASKBACK please": "ends with a question mark",
    }
    assert res.written == 2 and res.rejected == 3
    # rejected rows count as finished: a rerun sends nothing
    n = len(api.requests)
    asyncio.run(synth.synth_answers(rows, out, settings(api)))
    assert len(api.requests) == n


def test_reject_reason_and_cleaning():
    assert reject_reason("The patient received heparin.") is None
    assert reject_reason("I am an AI and cannot say.") is not None
    assert reject_reason("As a language model I think it is CHF.") is not None
    assert reject_reason("I cannot determine that from the note.") == "refusal"
    assert reject_reason("Is it heparin?") == "ends with a question mark"
    assert reject_reason("The summary does not mention the dose.") is None
    assert clean_instruction('  \n2) Instruction: "Expand AKI."\n') == "Expand AKI."
    assert clean_instruction("- New instruction: List the drugs.") == "List the drugs."


def test_rate_limiter_window_arithmetic():
    now = [0.0]
    lim = RateLimiter(rpm=2, tpm=100, window=60, clock=lambda: now[0])
    assert lim._wait_time(10, 0.0) == 0
    lim.events.extend([[0.0, 10.0], [1.0, 10.0]])
    assert lim._wait_time(10, 2.0) == pytest.approx(58.0)  # third request waits for the first to age out
    lim.events.popleft()
    assert lim._wait_time(95, 2.0) == pytest.approx(59.0)  # 10 + 95 tokens > 100: wait for the second
    assert lim._wait_time(50, 2.0) == 0
    assert lim._wait_time(10, 61.5) == 0 and not lim.events


def test_rate_limiter_spaces_requests():
    lim = RateLimiter(rpm=2, tpm=None, window=0.2)

    async def go():
        return [(await lim.acquire(1))[0] for _ in range(3)]

    times = asyncio.run(go())
    assert times[2] - times[0] >= 0.2 - 1e-3


def rate_limited(**headers: str) -> openai.RateLimitError:
    response = httpx.Response(429, headers=headers, request=httpx.Request("POST", "http://127.0.0.1/v1"))
    return openai.RateLimitError("rate limited", response=response, body=None)


def test_retry_after_forms_and_backoff_caps():
    assert retry_after(rate_limited(**{"retry-after-ms": "250", "retry-after": "9"})) == pytest.approx(0.25)
    assert retry_after(rate_limited(**{"retry-after": "3"})) == 3.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(rate_limited(**{"retry-after": later})) <= 30
    assert retry_after(rate_limited(**{"retry-after": "soon"})) is None
    assert retry_after(rate_limited()) is None and retry_after(ValueError("x")) is None
    rng = random.Random(0)
    policy = RetryPolicy(base=1.0, cap=4.0, retry_after_cap=5.0)
    assert policy.delay(rate_limited(**{"retry-after": "120"}), 0, rng) == 5.0  # the server's wait, capped
    assert all(2.0 <= policy.delay(rate_limited(), 3, rng) <= 4.0 for _ in range(20))  # 8 s capped to 4, jittered


def test_cli_notes_summary_and_bad_key(api, tmp_path, monkeypatch, capsys):
    csv = tmp_path / "cases.csv"
    csv.write_text("patient_uid,text,age\n" + "".join(f'{c["patient_uid"]},"{c["text"]}",40\n' for c in CASES[:3]))
    out = tmp_path / "notes.jsonl"
    monkeypatch.setenv("MY_KEY", "sk-test")
    args = ["notes", "--input", str(csv), "--out", str(out), "--base-url", api.base_url, "--model", "m",
            "--api-key-env", "MY_KEY", "--price-in", "1", "--price-out", "2", "--rpm", "600", "--tpm", "100000"]
    assert synth.main(args) == 0
    text = capsys.readouterr().out
    assert "wrote 3" in text and "prompt_tokens=" in text and "cost=$" in text
    assert api.requests[0]["model"] == "m"

    api.responder.faults = ["401"]
    assert synth.main(args[:4] + [str(tmp_path / "other.jsonl")] + args[5:]) == 2
    assert "AuthenticationError" in capsys.readouterr().err
    assert len(synth.read_jsonl(out)) == 3  # nothing already saved is lost

    assert synth.main(["notes", "--input", str(tmp_path / "missing.csv"), "--out", str(out), "--model", "m"]) == 2
    assert "no such file" in capsys.readouterr().err
