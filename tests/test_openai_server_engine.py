"""The OpenAI-compatible backend as the main engine, against a real server nobody here wrote: llama-cpp-python's.

``python -m llama_cpp.server --model tiny.gguf`` serves the tiny GGUF on loopback; the app's engine, chat page,
compare page and ``eval.generate`` talk to it with the real ``openai`` client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from asclepius_ui.engines import GenerationError, GenerationSettings, LoadOptions, load_engine
from asclepius_ui.phi_guard import note_key
from asclepius_ui.storage import open_storage
from asclepius_ui.ui.context import AppContext

from .ports import free_port
from .test_ui_chat import NOTE, bot_text, open_page, set_max_new
from .test_ui_compare import _trial

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")

SERVED = "tiny-asclepius"
GREEDY = GenerationSettings(max_new_tokens=16)


def ascii_only(text: str) -> str:
    return "".join(c for c in text if c.isascii())


@pytest.fixture(scope="module")
def server_url(tiny_gguf, tmp_path_factory):
    """A real llama-cpp-python server on a free loopback port, stopped after the module.

    ``--interrupt_requests False``: by default this server ends a running answer when another request arrives
    (the engine reports that as an unfinished answer); a server for several raters queues them instead.
    """
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf), "--host",
                                 "127.0.0.1", "--port", str(port), "--model_alias", SERVED, "--n_ctx", "1024",
                                 "--n_threads", "1", "--interrupt_requests", "False"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def served(server_url):
    engine = load_engine(LoadOptions(SERVED, base_url=server_url))  # --backend auto: openai with --base-url
    yield engine
    engine.close()


def test_counts_tokens_with_the_server_and_answers_as_llama_cpp_does(served, gguf_engine):
    assert served.backend == "openai" and served.server.tokenize == "llama-cpp-python"
    assert served.capabilities.tokenizer
    # This server does not say its context: it is unknown (never assumed), and the budget line says so.
    assert not served.context_known and served.context_limit is None
    assert any("does not say how many tokens" in n for n in served.notices)
    assert "context unknown" in served.budget(served.make_prompt(NOTE, "What was the diagnosis?"), 16).describe()
    prompt = served.prompt(NOTE, "What was the diagnosis?")
    assert served.count_tokens(prompt) == gguf_engine.count_tokens(prompt)  # BOS once, the same vocabulary
    updates = list(served.stream(prompt, GREEDY, min_interval=0.0))
    assert len(updates) > 3 and updates[-1].done and updates[-1].new_tokens > 3
    local = gguf_engine.generate(prompt, GREEDY)
    # Greedy with no repetition penalty: the same tokens. The random model emits stray byte tokens, which this
    # server drops (bytes decoded with errors="ignore", per chunk) and the app shows as U+FFFD; compare the rest.
    assert ascii_only(updates[-1].text).strip() == ascii_only(local.text).strip() != ""


def test_stop_closes_the_request(served):
    stop = threading.Event()
    for update in served.stream(served.prompt(NOTE, "Summarize."), GREEDY.replace(max_new_tokens=80), stop,
                                min_interval=0.0):
        if update.new_tokens >= 3:
            stop.set()
    assert update.done and update.stopped and update.new_tokens < 50


def test_truncation_with_server_counts_and_an_over_long_prompt_is_a_clear_error(server_url):
    e = load_engine(LoadOptions(SERVED, base_url=server_url, context_length=1024))
    long_note = NOTE + "\n".join(f"Day {i}: stable, walked in the hall, ate well." for i in range(150))
    cut = e.truncate_note(long_note, "Summarize.", 64)
    assert cut.kept + cut.cut == long_note and cut.cut
    assert e.budget(e.prompt(cut.kept, "Summarize."), 64).fits
    # The context unknown (nothing assumed), or a wrong --context-length: the server refuses the long note, and
    # its refusal (asked again for one token, not streamed) tells the engine the real limit, said in plain words.
    for options in ({}, {"context_length": 8192}):
        wide = load_engine(LoadOptions(SERVED, base_url=server_url, **options))
        assert wide.budget(wide.make_prompt(long_note, "Summarize."), 16).fits  # nothing here says otherwise
        with pytest.raises(GenerationError, match="can read at most 1,024 tokens at once") as refused:
            wide.generate(wide.prompt(long_note, "Summarize."), GREEDY)
        assert "Truncate note to fit" in str(refused.value)
        assert wide.context_known and wide.context_length == wide.context_limit == 1024
        budget = wide.budget(wide.make_prompt(long_note, "Summarize."), 16)
        assert not budget.fits and budget.describe().endswith(f"of 1024 tokens (over by {budget.overflow} tokens)")
        assert any("reads at most 1024 tokens" in n for n in wide.notices)
        assert wide.generate(wide.prompt(cut.kept, "Summarize."), GREEDY).done  # the cut note is answered
        wide.close()
    e.close()


def near_the_limit(engine, question: str, left: int) -> str:
    """A note whose prompt fits the server's 1,024 tokens with at least ``left`` (and not many more) tokens to spare."""
    lines = [f"Day {i}: stable, walked in the hall, ate well." for i in range(150)]
    lo, hi = 0, len(lines)  # the most lines that leave ``left`` tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if engine.count_tokens(engine.prompt(NOTE + "\n".join(lines[:mid]), question)) <= 1024 - left:
            lo = mid
        else:
            hi = mid - 1
    return NOTE + "\n".join(lines[:lo])


def test_an_answer_the_server_cuts_short_says_so_and_teaches_the_limit(server_url):
    """The prompt fits, prompt + max new tokens does not: llama-cpp-python's server answers what is left of its
    context and ends ("length") without an error. The answer says so in plain words and the limit is learned (the
    server refuses a filler prompt as long as prompt + answer asked, stating it), so the budget is right after."""
    from asclepius_ui import batch

    asked = GREEDY.replace(max_new_tokens=64)
    for options in ({}, {"context_length": 8192}):  # the context unknown (the server does not say it), or wrong
        e = load_engine(LoadOptions(SERVED, base_url=server_url, **options))
        note = near_the_limit(e, "Summarize.", 12)
        prompt = e.make_prompt(note, "Summarize.")
        n = e.count_tokens(prompt.text)
        assert e.budget(prompt, 64).fits  # nothing here knew better
        if options:  # a Batch row carries the notice
            row = batch.answer_job(e, {"note": note, "question": "Summarize."}, asked)
            assert row["answer"] and not row["error"] and 0 < row["new_tokens"] <= 1024 - n < 64
            notice = row["notice"]
        else:
            *_, last = e.stream(e.prompt(note, "Summarize."), asked, min_interval=0.0)
            assert last.done and not last.stopped and 0 < last.new_tokens <= 1024 - n < 64 and last.text
            notice = last.notice
        assert notice.startswith(f"The server stopped the answer after {1024 - n} tokens of the 64 asked: its "
                                 "context is probably full (it reads at most 1,024 tokens at once, and this note "
                                 f"with the question is {n:,} tokens)"), notice
        assert e.context_known and e.context_limit == 1024
        budget = e.budget(prompt, 64)
        assert not budget.fits and budget.describe().endswith(f"of 1024 tokens (over by {budget.overflow} tokens)")
        assert any("reads at most 1024 tokens" in m for m in e.notices)
        # an answer with room for all it asked is whole and says nothing (though the server streams fewer pieces
        # than tokens: it drops the random model's stray bytes)
        assert e.generate(e.prompt(note, "Summarize."), GREEDY.replace(max_new_tokens=8)).notice == ""
        e.close()


def test_usage_figures_of_an_answer_cut_short_tell_the_limit():
    """A server that reports usage figures with its stream: the answer's tokens are counted there, and prompt +
    answer is the context it filled (nothing is asked of the server: it is not reached here)."""
    from openai.types import CompletionUsage

    from asclepius_ui.engines.openai import RemoteEngine, RemoteOptions

    e = RemoteEngine(RemoteOptions(model=SERVED, base_url=f"http://127.0.0.1:{free_port()}/v1", probe=False))
    asked = GREEDY.replace(max_new_tokens=64)
    whole = CompletionUsage(prompt_tokens=1000, completion_tokens=64, total_tokens=1064)
    assert e.cut_short(1000, 60, whole, asked) == "" and not e.context_known  # all it asked: nothing to say
    cut = CompletionUsage(prompt_tokens=1000, completion_tokens=24, total_tokens=1024)
    notice = e.cut_short(1000, 20, cut, asked)
    assert notice.startswith("The server stopped the answer after 24 tokens of the 64 asked: its context is probably "
                             "full (it reads at most 1,024 tokens at once, and this note with the question is 1,000 "
                             "tokens)."), notice
    assert e.context_known and e.context_limit == 1024
    assert any("learned from the usage figures of an answer it cut short" in m for m in e.notices)
    e.close()


def test_chat_page_says_when_the_server_cut_the_answer_short(server_url, launch_app, page):
    """In the page: the answer the server shortened says so under it and in the status, and the budget line then
    counts against the server's limit."""
    e = load_engine(LoadOptions(SERVED, base_url=server_url))
    note = near_the_limit(e, "What was the diagnosis?", 12)
    open_page(page, launch_app(AppContext(engine=e)))
    page.get_by_label("Discharge summary").fill(note)
    page.get_by_label("Instruction", exact=True).fill("What was the diagnosis?")
    budget = page.locator("#token-budget")
    expect(budget).to_contain_text("context unknown", timeout=15000)
    set_max_new(page, 64)
    expect(page.locator("#chat-guard")).to_contain_text(f"fingerprint {note_key(note)[:8]}", timeout=30000)
    page.locator("#chat-guard").get_by_text("Send this note as it is").click()
    page.get_by_role("button", name="Ask").click()
    status = page.locator("#chat-status")
    expect(status).to_contain_text("tokens/s", timeout=60000)
    expect(status).to_contain_text("The server stopped the answer after")
    expect(status).to_contain_text("tokens of the 64 asked: its context is probably full (it reads at most 1,024")
    expect(page.locator("#answers [data-testid='bot']").last.locator(".answer-notice")).to_contain_text(
        "tokens of the 64 asked")
    expect(budget).to_contain_text("of 1024 tokens (over by", timeout=15000)
    expect(page.locator("#model-notices")).to_contain_text("reads at most 1024 tokens")
    e.close()


def test_chat_page_on_the_served_model(served, launch_app, page):
    open_page(page, launch_app(AppContext(engine=served)))
    page.get_by_label("Discharge summary").fill(NOTE)
    page.get_by_label("Instruction", exact=True).fill("What was the diagnosis?")
    page.locator("#token-budget").get_by_text("Prompt ").wait_for(timeout=15000)  # counted by the server
    set_max_new(page, 24)
    # An endpoint: the guard asks first, naming the note (wait for this note's, then confirm it).
    expect(page.locator("#chat-guard")).to_contain_text(f"fingerprint {note_key(NOTE)[:8]}")
    page.locator("#chat-guard").get_by_text("Send this note as it is").click()
    page.get_by_role("button", name="Ask").click()
    page.locator("#chat-status").get_by_text("tokens/s").wait_for(timeout=60000)
    assert "remote" in bot_text(page)
    # all 24 tokens asked fit the context: not "cut short" (though fewer pieces came, the server dropping stray bytes)
    assert "stopped the answer" not in page.locator("#chat-status").inner_text()

    # Notices where they are read: above the note, not only in the collapsed "Model" section.
    banner = page.locator("#model-notices")
    expect(banner).to_contain_text("Not for clinical use")  # a model the registry does not know
    expect(banner).to_contain_text("does not say how many tokens")
    # A note over the server's context: the budget cannot know (it says so, it never assumes the largest); the
    # server's refusal is shown with its own limit in plain words, and the budget line is corrected.
    long_note = NOTE + "\n".join(f"Day {i}: stable, walked in the hall, ate well." for i in range(150))
    page.get_by_label("Discharge summary").fill(long_note)
    budget = page.locator("#token-budget")
    expect(budget).to_contain_text("context unknown", timeout=15000)
    expect(page.locator("#chat-guard")).to_contain_text(f"fingerprint {note_key(long_note)[:8]}", timeout=30000)
    page.locator("#chat-guard").get_by_text("Send this note as it is").click()
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#chat-status")).to_contain_text("can read at most 1,024 tokens at once", timeout=60000)
    expect(budget).to_contain_text("of 1024 tokens (over by", timeout=15000)
    expect(budget).not_to_contain_text("context unknown")
    expect(banner).to_contain_text("reads at most 1024 tokens")
    expect(banner).not_to_contain_text("does not say how many tokens")


def test_compare_page_served_against_the_local_gguf(served, gguf_engine, launch_app, page, tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    ctx = AppContext(engine=gguf_engine, contenders={f"{SERVED} (served)": served}, storage=st)
    page.goto(launch_app(ctx))
    _trial(page, "What was the diagnosis?", confirm="Send this note as it is")
    answers = [page.locator(f"#cmp-answer-{s} textarea").input_value() for s in "ab"]
    assert all(a.strip() for a in answers)
    st.close()


def test_eval_generate_against_the_server(server_url, gguf_engine, tmp_path):
    from eval import generate

    rows = [{"id": f"q{i}", "note": NOTE, "question": q, "task": "qa"}
            for i, q in enumerate(["What was the diagnosis?", "Summarize."])]
    inp, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = generate.main(["--backend", "openai", "--base-url", server_url, "--model", SERVED, "--input", str(inp),
                        "--out", str(out), "--preset", "greedy", "--max-new-tokens", "12", "--no-progress",
                        "--concurrency", "2"])
    assert rc == 0
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    for r in rows:
        local = gguf_engine.generate(gguf_engine.prompt(r["note"], r["question"]), GREEDY.replace(max_new_tokens=12))
        assert ascii_only(got[r["id"]]["answer"]).strip() == ascii_only(local.text).strip()
        assert got[r["id"]]["backend"] == "openai" and got[r["id"]]["model"] == SERVED
