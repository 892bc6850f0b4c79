"""The second ten minutes, in a real browser at 1366x768: each user lands on a page they may use, the task picker
starts each task afresh, the model's notices sit above the note, and the work stays in view (the answer after
Ask, Compare's vote, a study item's note beside its answers). One app (two users through the real login)."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from asclepius_ui.auth import add_user, load_users
from asclepius_ui.engines import LoadOptions, load_engine
from asclepius_ui.storage import open_storage
from asclepius_ui.studies import parse_study_file
from asclepius_ui.ui.context import AppContext

from .test_ui_chat import REAL_STYLE

PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
LAPTOP = {"width": 1366, "height": 768}
LONG_NOTE = REAL_STYLE + "\n".join(f"Day {i}: afebrile, walked in the hall, ate well." for i in range(40))


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_engine, tiny_safetensors_model, launch_app):
    d = tmp_path_factory.mktemp("workspace")
    users_file = d / "users.json"
    add_user(users_file, "alice", PASSWORDS["alice"], "admin")
    add_user(users_file, "bob", PASSWORDS["bob"], "rater")
    users = load_users(users_file)
    storage = open_storage(f"sqlite:///{d / 'ratings.db'}")
    study = d / "layout.jsonl"
    answer = " ".join(["The patient was treated for heart failure with diuresis and discharged home."] * 12)
    study.write_text("".join(json.dumps({
        "id": f"item{k}", "note": LONG_NOTE, "question": "Summarize the hospital course.", "task": "Summarization",
        "answer_one": f"One {k}: {answer}", "answer_two": f"Two {k}: {answer}", "answer_three": f"Three {k}: {answer}",
    }) + "\n" for k in range(2)))
    storage.create_study("layout", parse_study_file(study), 1, "alice")
    other = load_engine(LoadOptions(str(tiny_safetensors_model), precision="fp32", device="cpu"))
    ctx = AppContext(engine=tiny_engine, contenders={other.model_id: other}, storage=storage, users=users,
                     max_concurrent=2)
    yield launch_app(ctx, auth=users.check)
    storage.close()


def login(browser, url: str, user: str):
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Login").click()
    return context, page


@pytest.fixture(scope="module")
def alice(app, browser):
    """The admin's page at 1366x768, shared by the module's tests."""
    context, page = login(browser, app, "alice")
    yield page
    context.close()


def selected_tab(page) -> str:
    tab = page.get_by_role("tab", selected=True)
    expect(tab).to_have_count(1, timeout=30_000)
    return tab.inner_text().strip()


def box(page, selector: str) -> dict:
    b = page.locator(selector).first.bounding_box()
    assert b, f"{selector} is not shown"
    return b


def shot(page, name: str, tmp_path_factory) -> None:
    """A screenshot to look at the layout by eye (under pytest's temporary folder, never committed)."""
    page.screenshot(path=str(tmp_path_factory.getbasetemp() / f"{name}.png"))


def test_each_user_lands_on_the_first_page_they_may_use(app, alice, browser):
    """A rater whose only page is Study once logged in to a blank page (one unselected tab), also after reload."""
    context, bob = login(browser, app, "bob")
    for _ in range(2):  # after login, then after a reload
        assert selected_tab(bob) == "Study"
        expect(bob.locator("#study-page")).to_be_visible()
        expect(bob.locator("#study-start")).to_be_visible()
        bob.reload()
    context.close()
    assert selected_tab(alice) == "Chat"
    expect(alice.locator("#chat-note")).to_be_visible()


def test_picking_another_task_starts_its_argument_afresh(alice):
    """The picker once carried one task's argument into the next ("the abbreviation 'medications'")."""
    page = alice
    page.get_by_role("tab", name="Chat").click()
    arg = page.locator("#chat-arg textarea, #chat-arg input").first
    instruction = page.locator("#chat-instruction textarea")

    def pick(label: str) -> None:
        page.locator("#chat-task input").click()
        page.get_by_role("option", name=label).click()

    pick("Named entity recognition")  # a task with a default argument gets it
    expect(arg).to_have_value("medical conditions, medications, procedures")
    expect(instruction).to_have_value(re.compile("related to the patient's medical conditions, medications"))
    pick("Abbreviation expansion")  # no default: empty, the instruction shows what to fill
    expect(arg).to_have_value("")
    expect(instruction).to_have_value(re.compile("abbreviation '<abbreviation>'"))
    arg.fill("CHF")
    expect(instruction).to_have_value(re.compile("abbreviation 'CHF'"))
    pick("Coreference resolution")
    expect(arg).to_have_value("")
    expect(instruction).to_have_value(re.compile("'<expression>' refer to"))
    pick("Paraphrasing")
    expect(arg).to_have_value("hospital course")
    expect(instruction).to_have_value(re.compile("^Paraphrase the hospital course of"))
    pick("Free question")
    expect(instruction).to_have_value("")


def test_model_notices_are_above_the_note(alice):
    """The notices (unknown model, template, context) once sat only in the collapsed "Model" section."""
    page = alice
    page.get_by_role("tab", name="Chat").click()
    banner = page.locator("#model-notices")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Not for clinical use")  # the test model is none the registry knows
    expect(banner).to_contain_text("not a known Asclepius variant")
    assert box(page, "#model-notices")["y"] < box(page, "#chat-note")["y"]


def test_the_answer_is_in_view_after_ask_at_1366x768(alice, tmp_path_factory):
    """After pasting a long note the answer once started at y=620: every answer needed a scroll."""
    page = alice
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-note textarea").fill(LONG_NOTE)
    page.locator("#chat-instruction textarea").fill("Why was furosemide increased?")
    page.get_by_text("Generation settings").click()
    page.get_by_label("number input for Max new tokens").fill("12")
    page.get_by_label("number input for Max new tokens").press("Enter")
    page.get_by_text("Generation settings").click()
    page.get_by_role("button", name="Truncate note to fit").click()  # the test model reads 1,024 tokens
    expect(page.locator("#token-budget")).to_contain_text("(fits)", timeout=15_000)
    page.evaluate("window.scrollTo(0, 0)")
    ask = box(page, "#chat-ask")
    assert ask["y"] + ask["height"] <= LAPTOP["height"]  # Ask in view without scrolling
    page.locator("#chat-ask").click()
    bot = page.locator("#answers [data-testid='bot']").first
    expect(bot).to_contain_text("tokens/s", timeout=60_000)
    shot(page, "chat-after-ask-1366x768", tmp_path_factory)
    answer, answers = bot.bounding_box(), box(page, "#answers")
    assert 0 <= answer["y"] < LAPTOP["height"] - 100, answer  # the answer starts well inside the window
    assert answers["y"] + answers["height"] <= LAPTOP["height"], answers  # the whole answers area is in view
    assert answers["x"] > box(page, "#chat-note")["x"] + box(page, "#chat-note")["width"] - 5  # beside the note
    # Scrolling down the note side keeps the answers in view (the answers column is sticky).
    note = box(page, "#chat-note")
    page.mouse.move(note["x"] + 20, 100)  # over the note side, outside the note's own scrolling box
    page.mouse.wheel(0, 600)
    page.wait_for_timeout(300)
    moved = box(page, "#answers")
    assert page.evaluate("window.scrollY") > 100
    assert moved["y"] >= 0 and moved["y"] + moved["height"] <= LAPTOP["height"], moved


def test_compare_vote_buttons_are_above_the_fold(alice, tiny_engine, tmp_path_factory):
    """Compare's vote buttons were below the fold at 1366x768."""
    page, question = alice, "Why was furosemide increased?"
    page.get_by_role("tab", name="Compare").click()
    page.locator("#cmp-note textarea").fill(tiny_engine.truncate_note(LONG_NOTE, question, 12).kept)  # 1,024 tokens
    page.locator("#cmp-instruction textarea").fill(question)
    page.locator("#cmp-max-new input[type=number]").fill("12")
    page.locator("#cmp-max-new input[type=number]").press("Enter")
    page.evaluate("window.scrollTo(0, 0)")
    run = box(page, "#cmp-run")
    assert run["y"] + run["height"] <= LAPTOP["height"]
    page.locator("#cmp-run").click()
    expect(page.locator("#cmp-status")).to_contain_text("Both answers are ready", timeout=90_000)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "compare-1366x768", tmp_path_factory)
    for key in ("A", "B", "tie", "both_bad"):
        vote = box(page, f"#cmp-vote-{key}")
        assert vote["y"] + vote["height"] <= LAPTOP["height"], (key, vote)
    for side in "ab":
        assert box(page, f"#cmp-answer-{side}")["y"] < LAPTOP["height"] - 150


def test_a_study_item_keeps_note_and_answers_side_by_side(alice, tmp_path_factory):
    """A study item was 2,226 px tall: the note above the answers and the rubric under Submit."""
    page = alice
    page.get_by_role("tab", name="Study").click()
    page.locator("#study-start").click()
    page.locator("#study-answer-C textarea").wait_for(timeout=20_000)
    page.wait_for_function("() => document.querySelector('#study-question')?.innerText.trim().startsWith('Item')",
                           timeout=20_000)
    page.locator("#study-item").scroll_into_view_if_needed()
    page.evaluate("document.querySelector('#study-item').scrollIntoView()")
    shot(page, "study-1366x768", tmp_path_factory)
    note, answer = box(page, "#study-note-side"), box(page, "#study-answers-side")
    assert note["x"] + note["width"] <= answer["x"] + 1  # side by side
    for side in (note, answer):  # each side fits the window and scrolls on its own
        assert side["y"] >= -1 and side["y"] + side["height"] <= LAPTOP["height"] + 1, side
    scrolls = page.evaluate("""() => ['#study-note-side', '#study-answers-side'].map(s => {
        const e = document.querySelector(s); return [getComputedStyle(e).overflowY, e.scrollHeight > e.clientHeight];
    })""")
    assert all(overflow in ("auto", "scroll") for overflow, _ in scrolls), scrolls
    assert scrolls[1][1]  # three long answers: the answers side scrolls, the note stays where it is
    assert box(page, "#study-answer-A")["y"] < LAPTOP["height"]  # the first answer is in view beside the note
    assert box(page, "#study-rubric")["y"] < box(page, "#study-submit")["y"]  # the rubric is above Submit
    # Submit is reached by scrolling the answers side alone; the note does not move.
    before = box(page, "#study-note")["y"]
    page.evaluate("const e = document.querySelector('#study-answers-side'); e.scrollTop = e.scrollHeight")
    page.wait_for_timeout(200)
    submit = box(page, "#study-submit")
    assert 0 <= submit["y"] and submit["y"] + submit["height"] <= LAPTOP["height"], submit
    assert abs(box(page, "#study-note")["y"] - before) < 2
