"""Rating answers in the chat, in a real browser against a real app and a real SQLite file."""

from __future__ import annotations

import pytest

from asclepius_ui.storage import open_storage
from asclepius_ui.ui.context import AppContext
from asclepius_ui.ui.rating_widget import submit
from tests.pg import raw_execute

REFUSE = "CREATE TRIGGER refuse BEFORE INSERT ON ratings BEGIN SELECT RAISE(ABORT, 'database is unavailable'); END"
NOTE = "Discharge summary. The patient was admitted with pneumonia and treated with antibiotics."


@pytest.fixture(scope="module")
def chat_app(tmp_path_factory, tiny_engine, launch_app):
    url = f"sqlite:///{tmp_path_factory.mktemp('ui-ratings') / 'ratings.db'}"
    storage = open_storage(url)
    app = launch_app(AppContext(engine=tiny_engine, storage=storage))
    yield app, storage, url
    storage.close()


def _snap(i: int) -> dict:
    return dict(note="n", task="Free question", instruction=f"q{i}", prompt=f"p{i}", answer=f"a{i}", model_id="m",
                model_revision="r", precision="fp32", template="asclepius", settings={}, started_at=f"s{i}",
                finished_at=f"f{i}", generation_seconds=0.1, new_tokens=3, stopped=False)


def test_submit_keeps_the_uid_on_error_and_supersedes_on_change(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    st = open_storage(url)
    turns = [_snap(0), _snap(1)]
    raw_execute(url, REFUSE)
    msg, uid, saved = submit(st, turns, None, 3, ["other"], "hm", "uid-1", {}, "alice")
    assert "Not saved" in msg and "database is unavailable" in msg and uid == "uid-1" and saved == {}
    raw_execute(url, "DROP TRIGGER refuse")
    msg, uid2, saved = submit(st, turns, None, 3, ["other"], "hm", uid, saved, "alice")
    assert msg.startswith("Saved rating #1") and uid2 != uid
    assert submit(st, turns, None, 3, ["other"], "hm", uid2, saved, "alice")[0] == "Already saved as rating #1."
    msg, _, saved = submit(st, turns, 1, 1, ["incorrect"], "", uid2, saved, "alice")
    assert msg == "Saved rating #2 (replaces #1) for answer #2."
    msg, _, _ = submit(st, turns, 0, None, [], "", "uid-x", saved, "alice")
    assert "Pick a score" in msg
    rows = st.ratings(include_superseded=True)
    assert [(r["id"], r["answer"], r["score"], r["supersedes_id"]) for r in rows] == [(1, "a1", 3, None),
                                                                                     (2, "a1", 1, 1)]
    st.close()


def test_the_page_copy_rates_after_a_restart_and_a_redo_never_stores_twice(tmp_path):
    from asclepius_ui.signed import verify
    from asclepius_ui.ui.rating_widget import ASK_AGAIN, KEEP_SECRET, keep_state, save_from_page

    url = f"sqlite:///{tmp_path / 'r.db'}"
    st = open_storage(url)
    kept = keep_state(st, [_snap(0)], "uid-1", {})
    msg, after = save_from_page(st, [_snap(0)], None, 3, [], "", kept, "alice")
    assert msg.startswith("Saved rating #1")
    st.close()
    st = open_storage(url)  # a restarted server: no session state, the same database secret
    # The acknowledgement was lost: the page still holds the copy from before the save, and the rater redoes it.
    msg, _ = save_from_page(st, [], None, 3, [], "", kept, "alice")
    assert msg.startswith("Saved rating #1") and len(st.ratings(include_superseded=True)) == 1
    # With the acknowledged copy, a changed rating of the answer on screen supersedes it.
    msg, _ = save_from_page(st, [], 0, 4, [], "better", after, "alice")
    assert msg == "Saved rating #2 (replaces #1) for answer #1."
    forged = {"payload": dict(verify(after, st.secret(KEEP_SECRET)), turns=[dict(_snap(0), answer="forged")]),
              "mac": after["mac"]}
    msg, _ = save_from_page(st, [], 0, 1, [], "", forged, "alice")
    assert ASK_AGAIN in msg.replace("&#x27;", "'") and len(st.ratings(include_superseded=True)) == 2
    st.close()


def _visible(page, label: str):
    return page.get_by_label(label, exact=True).filter(visible=True).first


def test_rate_an_answer_in_the_chat(chat_app, page, tiny_bin_model):
    app, storage, url = chat_app
    page.goto(app)
    _visible(page, "Discharge summary").fill(NOTE)
    _visible(page, "Instruction").fill("Why was the patient admitted?")
    page.get_by_role("button", name="Ask", exact=True).click()
    page.locator("#chat-status").get_by_text("tokens/s").wait_for(timeout=60_000)
    # Honest model names: the answer's footer names the model's folder, never the path to it.
    footer = page.locator("#answers [data-testid='bot']").last.inner_text()
    assert f"{tiny_bin_model.name} · " in footer and str(tiny_bin_model.parent) not in footer, footer
    box = page.locator("#rate-box")
    box.locator("#rate-score").get_by_text("3 - Satisfactory").click()
    box.locator("#rate-tags").get_by_text("minor omission").click()
    box.locator("#rate-comment textarea").fill("Misses the antibiotic name.")
    box.locator("#rate-save").click()
    page.locator("#rate-status").get_by_text("Saved rating #").wait_for(timeout=20_000)
    [row] = storage.ratings()
    assert (row["score"], row["tags"], row["comment"]) == (3, ["minor omission"], "Misses the antibiotic name.")
    assert row["note"] == NOTE and row["instruction"] == "Why was the patient admitted?"
    assert row["model_id"] and row["model_revision"] and row["finished_at"] >= row["started_at"]
    assert row["prompt"].count(NOTE) == 1 and row["template"] == "asclepius" and row["precision"] == "fp32"
    assert row["settings"]["max_new_tokens"] >= 1 and row["generation_seconds"] > 0 and row["rater"] == "local"

    # The database fails: the rater sees why, and the form keeps the rating to retry.
    raw_execute(url, REFUSE)
    box.locator("#rate-score").get_by_text("1 - Unacceptable").click()
    box.locator("#rate-comment textarea").fill("Actually wrong.")
    box.locator("#rate-save").click()
    page.locator("#rate-status").get_by_text("Not saved").wait_for(timeout=20_000)
    assert "database is unavailable" in page.locator("#rate-status").inner_text()
    assert box.locator("#rate-score").get_by_label("1 - Unacceptable").is_checked()
    assert box.locator("#rate-comment textarea").input_value() == "Actually wrong."
    raw_execute(url, "DROP TRIGGER refuse")
    box.locator("#rate-save").click()
    page.locator("#rate-status").get_by_text("replaces #").wait_for(timeout=20_000)
    current = storage.ratings()
    assert [(r["score"], r["comment"], r["supersedes_id"]) for r in current] == [(1, "Actually wrong.", row["id"])]
    assert len(storage.ratings(include_superseded=True)) == 2

    # The export downloaded from the Admin page names the model by its folder too.
    page.get_by_role("tab", name="Admin").click()
    page.locator("#admin-export-ratings").click()
    page.locator("#admin-export-status").get_by_text("Exported").wait_for(timeout=20_000)
    link = page.locator("#admin-download a").first
    link.wait_for(timeout=20_000)
    exported = page.request.get(link.get_attribute("href")).text()
    assert f",{tiny_bin_model.name}," in exported and str(tiny_bin_model.parent) not in exported, exported


def test_a_signed_copy_survives_the_browsers_json():
    import json

    from asclepius_ui.signed import sign, verify

    kept = sign({"settings": {"temperature": 1.0, "top_p": 0.9}, "n": 3, "t": ["é", None]}, "k")
    back = json.loads(json.dumps(kept).replace("1.0", "1"))  # what JavaScript sends back for 1.0
    assert verify(back, "k") == back["payload"] and verify(back, "other") is None
    assert verify({"payload": {"n": 4}, "mac": kept["mac"]}, "k") is None
