"""The HTTP API a researcher scripts, through the real ``gradio_client`` against a real server with --auth.

Only the named actions are listed (no ``/lambda``, no page internals); a rater can rate a study through them; a
rater cannot reach what their role may not use, whatever the call; the boundary turns bad text and numbers into
clear messages.
"""

from __future__ import annotations

import json

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from asclepius_ui.auth import add_user, load_users
from asclepius_ui.storage import open_storage
from asclepius_ui.studies import parse_study_text
from asclepius_ui.ui.app import API_NAMES, may_use
from asclepius_ui.ui.context import AppContext

PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
N_SLOTS = 10  # the study page's answer slots (A..J)


@pytest.fixture(scope="module")
def api_app(tmp_path_factory, tiny_engine, launch_app):
    d = tmp_path_factory.mktemp("api")
    for user, role in (("alice", "admin"), ("bob", "rater")):
        add_user(d / "users.json", user, PASSWORDS[user], role)
    users = load_users(d / "users.json")
    st = open_storage(f"sqlite:///{d / 'r.db'}")
    text = "".join(json.dumps({"id": f"i{k}", "note": f"Note {k}", "question": f"Question {k}?", "task": "QA",
                               "answer_x": f"x{k}", "answer_y": f"y{k}"}) + "\n" for k in range(2))
    sid = st.create_study("api", parse_study_text(text, "jsonl"), 1, "alice")
    url = launch_app(AppContext(engine=tiny_engine, storage=st, users=users), auth=users.check)
    yield url, st, sid
    st.close()


def _client(url: str, user: str) -> Client:
    return Client(url, auth=(user, PASSWORDS[user]), verbose=False)


def test_only_named_actions_are_in_the_api(api_app):
    url, _, _ = api_app
    api = _client(url, "alice").view_api(return_format="dict", print_info=False)
    named = {name.strip("/") for name in api["named_endpoints"]}
    assert {"rate", "study_next", "study_submit", "study_skip"} <= named <= API_NAMES
    assert api["unnamed_endpoints"] == {}


def test_a_rater_rates_a_study_item_through_the_api(api_app):
    url, st, sid = api_app
    bob = _client(url, "bob")
    shown = bob.predict(sid, api_name="/study_next")
    assert shown[0].startswith("**Item i") and shown[1].startswith("Note ")
    answers = {shown[2], shown[6]}  # per answer: text, score, comment, where in the note
    assert {a[0] for a in answers} == {"x", "y"}
    form = [3, "fine", 1, "wrong"] + [None, ""] * (N_SLOTS - 2)
    after = bob.predict(sid, *form, api_name="/study_submit")
    assert after[-1].startswith("Saved item i")
    rows = st.study_ratings(sid)
    assert sorted((r["rater"], r["score"], r["comment"]) for r in rows) == [("bob", 1, "wrong"), ("bob", 3, "fine")]
    # Bad input through the API: clear messages, nothing stored.
    assert "must be a finite number" in bob.predict("nan", api_name="/study_next")[-1]
    assert "study id must be a number (got &#x27;x\ufffdy&#x27;)" in bob.predict("x\x00y", api_name="/study_next")[-1]
    assert len(st.study_ratings(sid)) == 2


def test_a_rater_cannot_use_pages_their_role_may_not(api_app, tmp_path):
    url, _, _ = api_app
    bob = _client(url, "bob")
    with pytest.raises(AppError, match="not available to your account"):
        bob.predict(None, 3, [], "", None, api_name="/rate")  # chat is not in --rater-pages (default: study)
    for user, role in (("alice", "admin"), ("bob", "rater")):
        add_user(tmp_path / "u.json", user, PASSWORDS[user], role)
    users = load_users(tmp_path / "u.json")
    ctx = AppContext(engine=None, users=users, rater_pages=frozenset({"study", "chat"}))
    assert may_use(ctx, "bob", "chat", "rater") and not may_use(ctx, "bob", "compare", "rater")
    assert not may_use(ctx, "bob", "admin", "admin") and may_use(ctx, "alice", "analysis", "admin")

