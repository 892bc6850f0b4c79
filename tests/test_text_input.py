"""One normaliser for incoming text and numbers: the same stored result on SQLite and PostgreSQL, clear limits."""

from __future__ import annotations

import json

import pytest

from asclepius_ui.errors import InputError
from asclepius_ui.rating_logic import check_rating
from asclepius_ui.storage import new_uid, open_storage
from asclepius_ui.studies import StudyFileError, parse_study_text
from asclepius_ui.text_input import MB, REPLACEMENT, clean_text, finite_number
from tests.pg import pg_server, pg_url  # noqa: F401

BAD = "before\x00after \ud800 lone"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'r.db'}"
    return request.getfixturevalue("pg_url")


def test_nul_and_lone_surrogates_become_a_visible_marker():
    assert clean_text(BAD) == f"before{REPLACEMENT}after {REPLACEMENT} lone"
    assert clean_text(None) == "" and clean_text("ünïcode 😀 ok") == "ünïcode 😀 ok"
    clean_text(BAD).encode("utf-8")  # storable and tokenisable


def test_size_limit_is_a_clear_message():
    assert clean_text("x" * MB, max_bytes=MB) == "x" * MB
    with pytest.raises(InputError, match=r"note is too long \(1.0 MB; the limit is 1.0 MB\)"):
        clean_text("é" * (MB // 2 + 1), "note", max_bytes=MB)


@pytest.mark.parametrize("value,message", [(float("nan"), "finite"), (float("inf"), "finite"), ("abc", "a number"),
                                           (2.5, "whole number"), (0, "from 1 to 4"), (7, "from 1 to 4")])
def test_numbers_must_be_finite_and_in_range(value, message):
    with pytest.raises(InputError, match=message):
        finite_number(value, "The score", lo=1, hi=4, integer=True)
    with pytest.raises(InputError):
        check_rating(value)


def test_bad_text_is_stored_the_same_on_every_database(db_url):
    st = open_storage(db_url)
    try:
        rid = st.save_rating(snapshot=dict(note=BAD, instruction=BAD, answer=BAD, prompt=BAD, model_id="m"),
                             score=3, rater="r", uid=new_uid(), comment=BAD)
        row = st.rating(rid)
        assert row["note"] == row["comment"] == row["answer"] == clean_text(BAD)
        text = json.dumps({"note": BAD, "question": "q", "task": "QA", "answer_a": BAD, "answer_b": "b"})
        sid = st.create_study("bad text", parse_study_text(text, "jsonl"), 1, "admin")
        view = st.next_assignment(sid, "r")
        assert view["note"] == clean_text(BAD) and clean_text(BAD) in [a["text"] for a in view["answers"]]
        st.submit_item(assignment_id=view["assignment_id"], rater="r", uid=new_uid(), seconds=1.0,
                       scores={a["answer_id"]: (2, BAD) for a in view["answers"]})
        assert {r["comment"] for r in st.study_ratings(sid)} == {clean_text(BAD)}
    finally:
        st.close()


def test_oversized_study_cells_are_listed_as_problems(monkeypatch):
    import asclepius_ui.text_input as ti

    monkeypatch.setattr(ti, "LIMITS", ti.Limits(note_bytes=100))
    text = json.dumps({"note": "n" * 101, "question": "q", "task": "QA", "answer_a": "a", "answer_b": "b"})
    with pytest.raises(StudyFileError) as err:
        parse_study_text(text, "jsonl")
    assert any("cell 'note' on line 1 is too long" in p for p in err.value.problems)
