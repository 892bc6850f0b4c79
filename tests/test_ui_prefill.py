"""Reading the note ahead in a real browser (and through /prepare) against a real Gradio server on loopback: the
page says when the note is ready, and the first token of the answer then comes sooner than on a cold Ask of the
same note, by the page's own first-token figures."""

from __future__ import annotations

import re
import time

import pytest
from gradio_client import Client
from playwright.sync_api import expect

from asclepius_ui.ui.context import AppContext

NOTE = ("DISCHARGE SUMMARY\nPatient: 71-year-old woman with COPD and CHF.\nHospital Course:\n"
        + "\n".join(f"Day {i}: ceftriaxone given, oxygen weaned to {i} L, walked {20 * i} m in the hall."
                    for i in range(1, 9)) + "\nDischarge medications: furosemide, metoprolol, tiotropium.\n")
FIRST = re.compile(r"first token after ([0-9.]+) s")


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tokenizer_dir):
    """A wider random LLaMA than the shared tiny one, so that reading a note takes measurably longer than the
    question (with the tiny one both are a few milliseconds, within the page's own overheads)."""
    from asclepius_ui.engines import LoadOptions, load_engine
    from train.tiny_model import init_model, save_sharded_bin, tiny_llama_config

    out = tmp_path_factory.mktemp("wider")
    save_sharded_bin(init_model(tiny_llama_config(400, hidden=512, layers=4, heads=4, context=1024)), out, shards=1)
    for f in tokenizer_dir.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return load_engine(LoadOptions(str(out), precision="fp32", device="cpu"))


@pytest.fixture(scope="module")
def url(launch_app, engine):
    return launch_app(AppContext(engine=engine))


def first_token_s(page, n: int) -> float:
    """The first-token time in the footer of the ``n``-th answer (waits for it)."""
    bot = page.locator("#answers [data-testid='bot']").nth(n)
    expect(bot).to_contain_text("first token after", timeout=60_000)
    return float(FIRST.search(bot.inner_text()).group(1))


def test_a_note_read_ahead_answers_sooner_than_a_cold_ask(url, engine, page):
    page.goto(url)
    page.get_by_label("Discharge summary").wait_for()
    engine.prefix_cache.clear()
    page.get_by_label("Discharge summary").fill(NOTE)
    expect(page.locator("#chat-prefill")).to_contain_text("Note ready", timeout=60_000)
    page.get_by_label("Instruction", exact=True).fill("What medications was the patient discharged on?")
    page.get_by_text("Generation settings").click()
    box = page.get_by_label("number input for Max new tokens")
    box.fill("8")
    box.press("Enter")
    expect(page.locator("#token-budget")).to_contain_text("answer up to 8 ", timeout=30_000)  # the page has it
    ask = page.get_by_role("button", name="Ask")
    expect(ask).to_be_enabled()
    ask.click()
    ready = first_token_s(page, 0)
    engine.prefix_cache.clear()  # the same note, nothing kept: a cold Ask
    ask.click()
    cold = first_token_s(page, 1)
    print(f"first token: read ahead {ready} s, cold {cold} s")
    assert ready < cold, (ready, cold)


def test_prepare_endpoint_reads_a_note_for_scripts(url, engine):
    client = Client(url, verbose=False)
    engine.prefix_cache.clear()
    note = NOTE.replace("71-year-old", "68-year-old")
    said = client.predict(note, "", api_name="/prepare")
    deadline = time.monotonic() + 60
    while "Note ready" not in said and time.monotonic() < deadline:
        assert said.startswith("Reading the note"), said
        said = client.predict(note, "", api_name="/prepare")
    assert "Note ready" in said
    assert engine.prefix_cache.covers(engine.encode(engine.make_prompt(note, "Why?").prefix))
    assert "Unknown template" in client.predict(note, "nope", api_name="/prepare")
    assert "empty" in client.predict("  ", "", api_name="/prepare")
