"""The chat page in a real browser against a real Gradio server on loopback."""

import time
from urllib.parse import urlparse

import pytest

from asclepius_ui.ui.context import AppContext

NOTE = ("DISCHARGE SUMMARY\nPatient: 64-year-old man\nHospital Course:\nCXR showed RLL infiltrate; treated for CAP "
        "with ceftriaxone and improved.\nFollow up with PCP in 1 week.\n")


@pytest.fixture(scope="module")
def chat_url(launch_app, tiny_engine):
    return launch_app(AppContext(engine=tiny_engine))


def answers(page):
    return page.locator("#answers .message-row, #answers [data-testid='bot']")


def bot_text(page) -> str:
    bots = page.locator("#answers [data-testid='bot']")
    return bots.last.inner_text() if bots.count() else ""


def open_page(page, url):
    page.goto(url)
    page.get_by_label("Discharge summary").wait_for()


def pick_task(page, label):
    page.get_by_label("Task").click()
    page.get_by_role("option", name=label).click()


def set_max_new(page, value: int):
    page.get_by_text("Generation settings").click()
    box = page.get_by_label("number input for Max new tokens")
    box.fill(str(value))
    box.press("Enter")


def test_ask_streams_an_answer_and_stays_on_loopback(chat_url, page):
    open_page(page, chat_url)
    page.get_by_label("Discharge summary").fill(NOTE)
    pick_task(page, "Abbreviation expansion")
    page.get_by_label("Abbreviation", exact=True).fill("CAP")
    instruction = page.get_by_label("Instruction", exact=True)
    for _ in range(50):
        if "'CAP'" in instruction.input_value():
            break
        time.sleep(0.1)
    assert "abbreviation 'CAP'" in instruction.input_value()
    set_max_new(page, 300)
    page.get_by_role("button", name="Ask").click()
    lengths = []
    deadline = time.time() + 60
    while time.time() < deadline:
        text = bot_text(page)
        lengths.append(len(text))
        if "tokens/s" in text:
            break
        time.sleep(0.05)
    assert "tokens/s" in bot_text(page)
    growing = sorted(set(n for n in lengths if n))
    assert len(growing) >= 3, f"answer did not stream: {lengths}"
    assert "fp32" in bot_text(page)
    hosts = {urlparse(u).hostname for u in page.seen_urls if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {"127.0.0.1"}, hosts


def test_stop_ends_generation_early(chat_url, page):
    open_page(page, chat_url)
    page.get_by_label("Discharge summary").fill(NOTE)
    page.get_by_label("Instruction", exact=True).fill("Summarize the hospital course.")
    set_max_new(page, 600)
    page.get_by_role("button", name="Ask").click()
    page.wait_for_function("() => /Generating… ([3-9]|[1-9][0-9]+) tokens/.test("
                           "document.querySelector('#chat-status')?.innerText || '')", timeout=30000)
    page.get_by_role("button", name="Stop").click()
    page.locator("#chat-status").get_by_text("Stopped").wait_for(timeout=30000)
    stats = page.locator("#chat-status").inner_text()
    tokens = int(stats.split(" tokens ·")[0].split("·")[-1])
    assert tokens < 600


def test_empty_note_is_explained_and_server_stays_up(chat_url, page):
    open_page(page, chat_url)
    page.get_by_label("Instruction", exact=True).fill("What happened?")
    page.get_by_role("button", name="Ask").click()
    page.locator("#chat-status").get_by_text("The note is empty").wait_for(timeout=15000)
    page.get_by_label("Discharge summary").fill(NOTE)
    page.get_by_label("Instruction", exact=True).fill("")
    page.get_by_role("button", name="Ask").click()
    page.locator("#chat-status").get_by_text("The instruction is empty").wait_for(timeout=15000)
    page.get_by_label("Instruction", exact=True).fill("What happened?")
    set_max_new(page, 8)
    page.get_by_role("button", name="Ask").click()
    page.locator("#chat-status").get_by_text("tokens/s").wait_for(timeout=30000)


def test_long_note_is_flagged_and_truncated_visibly(chat_url, page):
    open_page(page, chat_url)
    long_note = NOTE + "\n".join(f"Day {i}: stable, walked in the hall, ate well." for i in range(300))
    page.get_by_label("Discharge summary").fill(long_note)
    page.get_by_label("Instruction", exact=True).fill("Summarize.")
    page.locator("#token-budget").get_by_text("over by").wait_for(timeout=15000)
    page.get_by_role("button", name="Ask").click()
    page.locator("#chat-status").get_by_text("Nothing was generated").wait_for(timeout=15000)
    assert bot_text(page) == ""
    page.get_by_role("button", name="Truncate note to fit").click()
    page.locator("#chat-status").get_by_text("Cut ").wait_for(timeout=15000)
    cut = page.get_by_label("Text removed from the note").input_value()
    kept = page.get_by_label("Discharge summary").input_value()
    assert cut and kept + cut == long_note
    page.locator("#token-budget").get_by_text("(fits)").wait_for(timeout=15000)


def test_demo_banner(launch_app, tiny_engine, page):
    tiny_engine.is_demo = True
    try:
        url = launch_app(AppContext(engine=tiny_engine))
    finally:
        tiny_engine.is_demo = False
    open_page(page, url)
    banner = page.locator("#demo-banner")
    assert "Demo model, not for clinical use" in banner.inner_text()
    assert "--model" in banner.inner_text()


def test_regenerate_replaces_the_last_answer_and_clear_empties(chat_url, page):
    open_page(page, chat_url)
    page.get_by_label("Discharge summary").fill(NOTE)
    page.get_by_label("Instruction", exact=True).fill("What was the diagnosis?")
    set_max_new(page, 6)
    page.get_by_role("button", name="Ask").click()
    page.locator("#chat-status").get_by_text("tokens/s").wait_for(timeout=30000)
    page.get_by_label("Instruction", exact=True).fill("")
    # Record every status the page shows: a 6-token answer passes through "Generating…" too fast to poll for.
    page.evaluate("""() => { window.statuses = []; const el = document.querySelector('#chat-status');
        new MutationObserver(() => window.statuses.push(el.innerText)).observe(el, {subtree: true,
        childList: true, characterData: true}); }""")
    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_function("() => window.statuses.some(s => s.includes('Generating'))"
                           " && window.statuses.at(-1).includes('tokens/s')", timeout=30000)
    assert page.locator("#answers [data-testid='bot']").count() == 1
    assert page.locator("#answers [data-testid='user']").last.inner_text().strip() == "What was the diagnosis?"
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("() => document.querySelectorAll('#answers [data-testid=\"bot\"]').length === 0",
                           timeout=15000)
