"""The chat page in a real browser against a real Gradio server on loopback."""

import re
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from asclepius_ui.examples import example_notes
from asclepius_ui.tasks import TASKS
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
    expect(page.get_by_label("Instruction", exact=True)).to_have_value(re.compile("abbreviation 'CAP'"))
    set_max_new(page, 300)
    # Record every length the answer shows: streaming means it grows in several steps.
    page.evaluate("""() => { window.lengths = []; const el = document.querySelector('#answers');
        new MutationObserver(() => { const b = [...el.querySelectorAll("[data-testid='bot']")].at(-1);
        if (b) window.lengths.push(b.innerText.length); }).observe(el, {subtree: true, childList: true,
        characterData: true}); }""")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#answers [data-testid='bot']").last).to_contain_text("tokens/s", timeout=60_000)
    growing = sorted(set(n for n in page.evaluate("window.lengths") if n))
    assert len(growing) >= 3, f"answer did not stream: {growing}"
    assert "preset greedy" in bot_text(page)
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
    # the status line is written by the answer's own stream only, so "Stopped" is the last thing it says
    expect(page.locator("#chat-status")).not_to_contain_text("Stopping", timeout=5000)
    expect(page.locator("#answers [data-testid='bot']").last).to_contain_text("stopped", timeout=30000)
    stats = bot_text(page).splitlines()[-1]
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


REAL_STYLE = example_notes()["cardiology chf"]
ARGS = {"Entity type": "medications", "Abbreviation": "CHF", "Entity": "furosemide", "Event": "the hypokalemia",
        "Expression": "her water pill", "Section": "hospital course"}


def test_every_task_from_the_picker_gets_an_answer_on_a_real_style_note(chat_url, page):
    open_page(page, chat_url)
    page.get_by_label("Discharge summary").fill(REAL_STYLE)
    set_max_new(page, 200)  # room for the longest task instruction: the tiny test model has 1,024 tokens
    page.get_by_role("button", name="Truncate note to fit").click()
    expect(page.locator("#token-budget")).to_contain_text("(fits)", timeout=15_000)
    box = page.get_by_label("number input for Max new tokens")
    box.fill("4")
    box.press("Enter")
    instruction = page.get_by_label("Instruction", exact=True)
    status = page.locator("#chat-status")
    for n, t in enumerate(TASKS.values(), start=1):
        pick_task(page, t.label)
        if t.has_argument_box:
            expect(page.locator("#chat-arg")).to_be_visible()
            page.get_by_label(t.arg_label, exact=True).fill(ARGS[t.arg_label])
            expect(instruction).to_have_value(re.compile(re.escape(ARGS[t.arg_label])))
        elif not t.needs_arg():  # summarization: a ready instruction, nothing to fill
            expect(instruction).to_have_value(t.instruction)
        else:  # question answering and free questions: the placeholder says what to type
            expect(instruction).to_have_value("")
            expect(instruction).to_have_attribute("placeholder", t.arg_placeholder)
            instruction.fill("Why was furosemide increased?")
        page.get_by_role("button", name="Ask").click()
        expect(page.locator("#answers [data-testid='bot']")).to_have_count(n, timeout=60_000)
        expect(page.locator("#answers [data-testid='bot']").last).to_contain_text("tokens/s", timeout=60_000)
        expect(status).to_contain_text("tokens/s")
        expect(page.locator("#chat-evidence .evidence")).to_be_attached()


def test_ctrl_enter_asks_and_the_answer_points_into_the_note(chat_url, page):
    open_page(page, chat_url)
    page.get_by_label("Discharge summary").fill(NOTE + 'Seen with <img src="http://evil.example/x.png"> on the ward.')
    set_max_new(page, 5)
    box = page.get_by_label("Instruction", exact=True)
    box.fill("What was the diagnosis?")
    box.press("Control+Enter")
    expect(page.locator("#chat-status")).to_contain_text("tokens/s", timeout=30_000)
    expect(page.locator("#chat-evidence .evidence")).to_be_attached()
    assert page.locator("#chat-evidence img").count() == 0  # the note's markup is shown as text


def test_stop_cancels_a_request_waiting_in_the_queue(launch_app, tiny_engine, browser):
    context = browser.new_context()  # a page and an app of its own: nothing else in its queue or its session
    page = context.new_page()
    open_page(page, launch_app(AppContext(engine=tiny_engine)))
    page.get_by_label("Discharge summary").fill(NOTE)
    page.get_by_label("Instruction", exact=True).fill("Summarize the hospital course.")
    set_max_new(page, 650)  # long enough that the second question surely waits behind the first
    status = page.locator("#chat-status")
    page.get_by_role("button", name="Ask").click()
    expect(status).to_contain_text("Generating…", timeout=30_000)
    before = page.locator("#chat-queue .request-id").get_attribute("data-request") \
        if page.locator("#chat-queue .request-id").count() else None
    page.get_by_role("button", name="Ask").click()  # queued behind the first (one generation at a time)
    expect(page.locator("#chat-queue")).to_contain_text("Queued")
    page.wait_for_function(  # this click's own notice: the page holds the new request's id now
        "b => { const e = document.querySelector('#chat-queue .request-id'); "
        "return e && e.dataset.request !== b; }", arg=before)
    page.get_by_role("button", name="Stop").click()  # stops the queued one, not the running one
    expect(status).to_contain_text("Stopped while waiting in the queue", timeout=60_000)
    expect(page.locator("#answers [data-testid='bot']")).to_have_count(1)
    context.close()


def test_a_question_asked_while_answering_waits_and_both_answers_stay(launch_app, tiny_engine, browser):
    context = browser.new_context()  # an app of its own: its queue holds only this page's two questions
    page = context.new_page()
    open_page(page, launch_app(AppContext(engine=tiny_engine)))
    page.get_by_label("Discharge summary").fill(NOTE)
    box = page.get_by_label("Instruction", exact=True)
    box.fill("Summarize the hospital course.")
    set_max_new(page, 650)
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#chat-status")).to_contain_text("Generating…", timeout=30_000)
    box.fill("Which antibiotic was given?")
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#chat-queue")).to_contain_text("Queued")
    bots = page.locator("#answers [data-testid='bot']")
    expect(bots).to_have_count(2, timeout=60_000)
    expect(bots.nth(1)).to_contain_text("tokens/s", timeout=60_000)
    expect(bots.nth(0)).to_contain_text("tokens/s")  # the first answer is still there, finished
    users = page.locator("#answers [data-testid='user']")
    expect(users).to_have_count(2)
    expect(users.nth(1)).to_contain_text("Which antibiotic was given?")
    context.close()


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_laptop_layout_keeps_the_controls_in_view(launch_app, tiny_engine, tmp_path_factory, browser, size):
    from asclepius_ui.storage import open_storage

    st = open_storage(f"sqlite:///{tmp_path_factory.mktemp('layout') / 'r.db'}")
    url = launch_app(AppContext(engine=tiny_engine, storage=st))
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    open_page(page, url)
    page.get_by_label("Discharge summary").fill(REAL_STYLE)
    boxes = {name: page.locator(sel).bounding_box() for name, sel in {
        "task": "#chat-task", "instruction": "#chat-instruction", "ask": "#chat-ask", "note": "#chat-note",
        "answers": "#answers", "rate": "#rate-box"}.items()}
    for name in ("task", "instruction", "ask"):
        b = boxes[name]
        assert b and b["y"] >= 0 and b["y"] + b["height"] <= size[1], (name, b, size)  # visible, no scrolling
    assert boxes["ask"]["x"] > boxes["note"]["x"] + boxes["note"]["width"] - 5  # controls beside the note
    # the rating form sits right under the answer it rates, in the same column
    assert 0 <= boxes["rate"]["y"] - (boxes["answers"]["y"] + boxes["answers"]["height"]) < 60
    assert abs(boxes["rate"]["x"] - boxes["answers"]["x"]) < 30
    out = tmp_path_factory.getbasetemp() / f"chat-{size[0]}x{size[1]}.png"
    page.screenshot(path=str(out))
    context.close()
    st.close()
