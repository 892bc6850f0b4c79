"""The blinded study in a real browser: an admin imports a file, two raters log in, rate, skip and resume."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from playwright.sync_api import expect

from asclepius_ui.auth import add_user, load_users
from asclepius_ui.storage import open_storage
from asclepius_ui.ui.context import AppContext

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"}


@pytest.fixture(scope="module")
def study_app(tmp_path_factory, tiny_engine, launch_app):
    d = tmp_path_factory.mktemp("ui-study")
    users_file = d / "users.json"
    for user, role in (("alice", "admin"), ("bob", "rater"), ("carol", "rater")):
        add_user(users_file, user, PASSWORDS[user], role)
    users = load_users(users_file)
    storage = open_storage(f"sqlite:///{d / 'ratings.db'}")
    study = d / "pilot.jsonl"
    study.write_text("".join(json.dumps({
        "id": f"item{k}", "note": f"Note {k}: admitted with pneumonia, given antibiotics.",
        "question": f"Question {k}: what was the diagnosis?", "task": "Question answering",
        "answer_asclepius": f"Asclepius answer {k}", "answer_chatgpt": f"ChatGPT answer {k}"}) + "\n"
        for k in range(3)))
    bad = d / "bad.csv"
    bad.write_text("note,question,answer_only\nn,q,a\n")
    url = launch_app(AppContext(engine=tiny_engine, storage=storage, users=users), auth=users.check)
    yield url, storage, study, bad
    storage.close()


def login(browser, url: str, user: str):
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Study").wait_for(timeout=30_000)
    return context, page


def start(page) -> None:
    page.get_by_role("tab", name="Study").click()
    page.locator("#study-start").click()


SETTLED = ("q => { const e = document.querySelector('#study-question'); "
           "return e && e.innerText.trim().startsWith('Item') && e.innerText !== q; }")


def next_shown(page, previous: str) -> None:
    """Wait until a different item is fully shown (not the old one, not a loading overlay)."""
    page.wait_for_function(SETTLED, arg=previous, timeout=20_000)


def current_item(page) -> tuple[str, dict[str, str]]:
    page.locator("#study-answer-A textarea").wait_for(timeout=20_000)
    next_shown(page, "")
    question = page.locator("#study-question").inner_text()
    answers = {lab: page.locator(f"#study-answer-{lab} textarea").input_value() for lab in "AB"}
    assert not page.locator("#study-answer-C").is_visible()
    return question, answers


def rate(page, a: int, b: int, last: bool = False) -> None:
    labels = {1: "1 - Unacceptable", 2: "2 - Poor", 3: "3 - Satisfactory", 4: "4 - Excellent"}
    before = page.locator("#study-question").inner_text()
    page.locator("#study-score-A").get_by_text(labels[a]).click()
    page.locator("#study-score-B").get_by_text(labels[b]).click()
    page.locator("#study-submit").click()
    if not last:
        next_shown(page, before)


def test_admin_imports_and_raters_rate_skip_and_resume(study_app, browser):
    url, storage, study_file, bad_file = study_app

    # Roles shape the page: a rater sees only the Study tab (default --rater-pages study), an admin every tab.
    ctx_b, bob = login(browser, url, "bob")
    for tab in ("Chat", "Compare", "Admin", "Analysis"):
        expect(bob.get_by_role("tab", name=tab)).to_have_count(0)
    assert "Admins only" not in bob.content() and "pilot" not in bob.content()

    # The admin imports a bad file (nothing imported, reasons shown), then the real one with overlap 2.
    ctx_a, alice = login(browser, url, "alice")
    for tab in ("Chat", "Compare", "Study", "Admin", "Analysis"):
        expect(alice.get_by_role("tab", name=tab)).to_be_visible()
    alice.get_by_role("tab", name="Admin").click()
    alice.locator("#admin-file input[type=file]").set_input_files(str(bad_file))
    alice.locator("#admin-import").click()
    status = alice.locator("#admin-import-status")
    status.get_by_text("Nothing was imported").wait_for(timeout=20_000)
    assert "missing column(s): task" in status.inner_text() and "at least two" in status.inner_text()
    assert storage.studies() == []
    alice.locator("#admin-file button[aria-label='Clear']").first.click()
    alice.locator("#admin-file input[type=file]").set_input_files(str(study_file))
    alice.locator("#admin-overlap input").fill("2")
    alice.locator("#admin-import").click()
    status.get_by_text("Imported study").wait_for(timeout=20_000)
    [info] = storage.studies()
    assert (info["name"], info["items"], info["overlap"]) == ("pilot", 3, 2)

    # Bob (who loaded the page before the import) reloads, rates one item, skips one, leaves mid-item.
    bob.reload()
    bob.get_by_role("tab", name="Study").wait_for(timeout=30_000)
    start(bob)
    q1, answers1 = current_item(bob)
    assert {v.split(" answer ")[0] for v in answers1.values()} == {"Asclepius", "ChatGPT"}
    assert "chatgpt" not in bob.locator("#study-page").inner_text().lower()  # model names stay hidden
    bob.get_by_text("Where in the note (answer A)").click()  # each answer can show the note it rests on
    expect(bob.locator("#study-evidence-A")).to_contain_text("Nothing in the note supports")  # made-up answers
    rate(bob, 4, 2)
    q2, _ = current_item(bob)
    assert q2 != q1
    bob.locator("#study-skip").click()
    next_shown(bob, q2)
    q3, answers3 = current_item(bob)
    assert bob.locator("#study-progress .study-progress").get_attribute("data-done") == "1"
    ctx_b.close()  # the browser is closed with item 3 open

    ctx_b, bob = login(browser, url, "bob")
    start(bob)
    q3_again, answers3_again = current_item(bob)
    assert (q3_again, answers3_again) == (q3, answers3)  # resumed: same item, same labels
    rate(bob, 3, 3, last=True)
    bob.locator("#study-status").get_by_text("Nothing left").wait_for(timeout=20_000)
    progress = bob.locator("#study-progress .study-progress")
    assert (progress.get_attribute("data-done"), progress.get_attribute("data-skipped")) == ("2", "1")
    ctx_b.close()

    # Carol gets all three items (the one bob skipped included): each item reaches its overlap of 2 or stays open.
    ctx_c, carol = login(browser, url, "carol")
    start(carol)
    for k in range(3):
        current_item(carol)
        rate(carol, 3, 1, last=k == 2)
    carol.locator("#study-status").get_by_text("Nothing left").wait_for(timeout=20_000)
    ctx_c.close()

    raters = defaultdict(set)
    for r in storage.study_ratings(info["id"]):
        raters[r["item"]].add(r["rater"])
    assert {k: sorted(v) for k, v in raters.items()} == {
        f"item{k}": (["carol"] if f"Question {k}" in q2 else ["bob", "carol"]) for k in range(3)}
    assert all(r["seconds_on_item"] > 0 for r in storage.study_ratings(info["id"]))

    # The admin sees progress per rater and the per-model means so far.
    alice.locator("#admin-refresh").click()
    alice.locator("#admin-overall").get_by_text("5 of 6 item ratings").wait_for(timeout=20_000)
    table = alice.locator("#admin-raters").inner_text()
    assert "bob" in table and "carol" in table
    means = alice.locator("#admin-means").inner_text()
    assert "asclepius" in means and "chatgpt" in means
    alice.locator("#admin-export-study").click()
    alice.locator("#admin-export-status").get_by_text("Exported 10 rows").wait_for(timeout=20_000)
    link = alice.locator("#admin-download a").first
    link.wait_for(timeout=20_000)
    body = alice.request.get(link.get_attribute("href")).text()
    assert body.splitlines()[0].startswith("id,study,item,rater,model") and len(body.splitlines()) == 11
    ctx_a.close()
