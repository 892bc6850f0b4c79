"""train.synth against a real local HTTP server speaking the OpenAI chat-completions protocol.

The server is the only test double (for the paid remote API); the real ``openai`` client talks to it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from train import synth
from train.synth import ClientSettings, RateLimiter, clean_instruction, reject_reason


class FakeOpenAI:
    """A chat-completions server: replies follow ``faults`` first (429, 500, malformed ...), then normal answers."""

    def __init__(self):
        self.faults: list[str] = []
        self.requests: list[dict] = []
        self.ok_usage = {"prompt": 0, "completion": 0}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.requests.append(body)
                    fault = owner.faults.pop(0) if owner.faults else None
                owner.respond(self, body, fault)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
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

    def respond(self, h: BaseHTTPRequestHandler, body: dict, fault: str | None) -> None:
        def send(status: int, payload: bytes, headers: dict | None = None):
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)

        def error(status: int, message: str, headers: dict | None = None):
            send(status, json.dumps({"error": {"message": message, "type": "x", "code": None}}).encode(), headers)

        if fault == "429":
            return error(429, "rate limited", {"Retry-After": "0"})
        if fault in ("500", "503"):
            return error(int(fault), "server error")
        if fault == "401":
            return error(401, "bad key")
        if fault == "badjson":
            return send(200, b'{"id": "x", "choices": [')
        content = "" if fault == "empty" else self.reply_text(body)
        prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
        completion_tokens = len(content.split())
        reply = {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        if fault == "nochoices":
            reply.pop("choices")
        elif content:
            with self.lock:
                self.ok_usage["prompt"] += prompt_tokens
                self.ok_usage["completion"] += completion_tokens
        send(200, json.dumps(reply).encode())


@pytest.fixture
def api():
    server = FakeOpenAI()
    yield server
    server.close()


def settings(api: FakeOpenAI, **kw) -> ClientSettings:
    base = dict(base_url=api.base_url, model="test-model", api_key="sk-test", concurrency=3, max_retries=4,
                backoff_base=0.01, backoff_max=0.05, timeout=10, max_tokens=64, price_in=0.5, price_out=1.5)
    return ClientSettings(**{**base, **kw})


CASES = [{"patient_uid": f"uid-{i}", "text": f"A {30 + i}-year-old man with chest pain number {i}."}
         for i in range(6)]


def test_notes_retry_on_429_5xx_and_malformed_then_resume(api, tmp_path):
    out = tmp_path / "notes.jsonl"
    api.faults = ["429", "500", "badjson", "empty", "503", "nochoices"]
    res = asyncio.run(synth.synth_notes(CASES[:4], out, settings(api)))
    rows = synth.read_jsonl(out)
    assert sorted(r["note_id"] for r in rows) == [f"uid-{i}" for i in range(4)]
    assert all(r["note"].startswith("DISCHARGE SUMMARY") and "```" not in r["note"] for r in rows)
    assert res.written == 4 and res.usage.failed == 0
    assert res.usage.retries == 6 and len(api.requests) == 10
    assert res.usage.reasons["429"] == 1 and res.usage.reasons["malformed"] == 3
    assert res.usage.prompt_tokens == api.ok_usage["prompt"]
    assert res.usage.completion_tokens == api.ok_usage["completion"]
    assert res.usage.cost(0.5, 1.5) == pytest.approx(
        api.ok_usage["prompt"] / 1000 * 0.5 + api.ok_usage["completion"] / 1000 * 1.5)

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

    api.faults = ["401"]
    assert synth.main(args[:4] + [str(tmp_path / "other.jsonl")] + args[5:]) == 2
    assert "AuthenticationError" in capsys.readouterr().err
    assert len(synth.read_jsonl(out)) == 3  # nothing already saved is lost

    assert synth.main(["notes", "--input", str(tmp_path / "missing.csv"), "--out", str(out), "--model", "m"]) == 2
    assert "no such file" in capsys.readouterr().err
