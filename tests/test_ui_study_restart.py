"""A server restart mid-item, as a rater lives it: Submit says the session ended and asks for a new login, and
after logging in again the scores and comment they had entered are still on the item (kept in the browser until
saved, then cleared)."""

from __future__ import annotations

import json

from asclepius_ui.auth import add_user, load_users
from asclepius_ui.storage import open_storage
from asclepius_ui.studies import parse_study_file
from asclepius_ui.ui.app import build_app
from asclepius_ui.ui.context import AppContext
from asclepius_ui.ui.server import ServerOptions, serve
from tests.ports import free_port
from tests.test_ui_study import PASSWORDS, current_item, login, start

DRAFTS = "Object.keys(localStorage).filter(k => k.startsWith('asclepius-draft|'))"
# Predicates are functions: Playwright runs a bare expression through eval, which the page's CSP refuses.


def _serve(tiny_engine, storage, users, port: int):
    demo = build_app(AppContext(engine=tiny_engine, storage=storage, users=users))
    serve(demo, ServerOptions(port=port), auth=users.check, block=False, quiet=True)
    return demo


def test_a_restart_mid_item_keeps_what_the_rater_entered(tmp_path, tiny_engine, browser):
    add_user(tmp_path / "users.json", "bob", PASSWORDS["bob"], "rater")
    users = load_users(tmp_path / "users.json")
    storage = open_storage(f"sqlite:///{tmp_path / 'ratings.db'}")
    study = tmp_path / "pilot.jsonl"
    study.write_text("".join(json.dumps({"id": f"item{k}", "note": f"Note {k}.", "question": f"Question {k}?",
                                         "task": "Question answering", "answer_a": f"A{k}", "answer_b": f"B{k}"})
                             + "\n" for k in range(2)))
    storage.create_study("pilot", parse_study_file(study), overlap=1, created_by="admin")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    demo = _serve(tiny_engine, storage, users, port)
    context = None
    try:
        context, bob = login(browser, url, "bob")
        start(bob)
        question, _ = current_item(bob)
        bob.locator("#study-score-A").get_by_text("3 - Satisfactory").click()
        bob.locator("#study-score-B").get_by_text("1 - Unacceptable").click()
        bob.locator("#study-comment-A textarea").fill("kept across the restart")
        bob.wait_for_function(f"() => {DRAFTS}.length === 1", timeout=10_000)

        demo.close()  # the server restarts: a new process would know no sessions either
        demo = _serve(tiny_engine, storage, users, port)

        bob.locator("#study-submit").click()
        bob.locator("#study-session").get_by_text("Your session ended").wait_for(timeout=20_000)
        assert storage.study_ratings() == []
        bob.goto(url)
        bob.get_by_label("username").fill("bob")
        bob.get_by_label("password").fill(PASSWORDS["bob"])
        bob.get_by_role("button", name="Login").click()
        bob.get_by_role("tab", name="Study").wait_for(timeout=30_000)
        start(bob)
        assert current_item(bob)[0] == question  # the same open item
        bob.wait_for_function("() => document.querySelector('#study-comment-A textarea').value === "
                              "'kept across the restart'", timeout=10_000)
        assert bob.locator("#study-score-A input[value='3']").is_checked()
        assert bob.locator("#study-score-B input[value='1']").is_checked()
        bob.locator("#study-submit").click()
        bob.locator("#study-status").get_by_text("Saved item").wait_for(timeout=20_000)
        bob.wait_for_function(f"() => {DRAFTS}.length === 0", timeout=10_000)  # saved: the draft is gone
        rows = {r["label"]: r for r in storage.study_ratings()}
        assert (rows["A"]["score"], rows["A"]["comment"], rows["B"]["score"]) == (3, "kept across the restart", 1)
    finally:
        if context is not None:
            context.close()
        demo.close()
        storage.close()
