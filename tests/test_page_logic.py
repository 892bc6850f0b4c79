"""The study and admin pages' handlers as plain functions, on a real SQLite database, without a browser."""

from __future__ import annotations

import json
import os

from asclepius_ui import private_files
from asclepius_ui.errors import StorageError
from asclepius_ui.storage import open_storage
from asclepius_ui.ui import admin_logic, study_logic
from asclepius_ui.ui.common import internal_error, user_message


def _study(path, n=2, tag=""):
    path.write_text("".join(json.dumps({"id": f"i{k}", "note": f"Note {k}{tag}", "question": f"Q{k}? <b>x</b>",
                                        "task": "QA", "answer_a": f"a{k}", "answer_b": f"b{k}"}) + "\n"
                            for k in range(n)))
    return str(path)


def test_admin_import_duplicate_report_and_private_export(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    bad = tmp_path / "bad.csv"
    bad.write_text("note,question\nn,q\n")
    text, sid = admin_logic.import_study(st, str(bad), "", 1, "admin")
    assert sid is None and "Nothing was imported" in text and "missing column(s): task" in text
    text, sid = admin_logic.import_study(st, _study(tmp_path / "s.jsonl"), "", "2", "admin")
    assert sid is not None and text.startswith("Imported study **s**: 2 items") and "overlap 2" in text
    text, again = admin_logic.import_study(st, _study(tmp_path / "s2.jsonl"), "", 2, "admin")
    assert again is None and "same content as the study" in text
    _, again = admin_logic.import_study(st, _study(tmp_path / "s2.jsonl"), "", 2, "admin", allow_duplicate=True)
    assert again is not None
    text, none = admin_logic.import_study(st, _study(tmp_path / "s3.jsonl", tag="x"), "", "nan", "admin")
    assert none is None and "finite number" in text
    overall, raters, means, _ = admin_logic.report(st, sid)
    assert "0 of 4 item ratings" in overall and raters == [] and means == []
    path, status = admin_logic.export_file(st, "study", "csv")
    assert status.startswith("Exported 0 rows") and os.stat(path).st_mode & 0o777 == 0o600
    folder = os.path.dirname(path)
    assert os.stat(folder).st_mode & 0o777 == 0o700 and os.path.dirname(folder) == str(private_files.root())
    private_files.release(path)
    assert not os.path.exists(folder)
    st.close()


def test_study_start_submit_skip_as_plain_functions(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    _, sid = admin_logic.import_study(st, _study(tmp_path / "s.jsonl"), "", 1, "admin")
    assert "Pick a study first" in study_logic.start(st, None, "bob", 10).status
    assert "study id must be a number" in study_logic.start(st, "x", "bob", 10).status
    shown = study_logic.start(st, sid, "bob", 10)
    assert shown.visible is True and "&lt;b&gt;x&lt;/b&gt;" in shown.header and len(shown.slots) == 10
    assert [s.visible for s in shown.slots[:3]] == [True, True, False]
    missing = study_logic.submit(st, shown.state, sid, "bob", [3, "", None, ""] + [None, ""] * 8, 10)
    assert "missing: B" in missing.status and missing.state is study_logic.KEEP
    done = study_logic.submit(st, shown.state, sid, "bob", [3, "ok", 4, ""] + [None, ""] * 8, 10,
                              clock=lambda: shown.state["shown"] + 5)
    assert done.status.startswith("Saved item i") and done.visible is True
    skipped = study_logic.skip(st, done.state, sid, "bob", 10)
    assert "Skipped." in skipped.status and "Nothing left" in skipped.status and skipped.visible is False
    assert [(r["rater"], r["seconds_on_item"]) for r in st.study_ratings(sid)] == [("bob", 5.0), ("bob", 5.0)]
    st.close()


def test_errors_users_see(caplog):
    assert user_message(StorageError("The database is read-only.")) == \
        '<div class="error-box">The database is read-only.</div>'
    box = internal_error(KeyError("<script>"), "test")
    assert "Internal error" in box and "<script>" not in box
    eid = box.split("Internal error ")[1].split(":")[0]
    assert any(eid in r.getMessage() and r.exc_info for r in caplog.records)


def test_study_answers_show_where_in_the_note_they_are_supported(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    note = ("Admitted with pneumonia. Treated with ceftriaxone for five days. <img src=http://x.invalid/a.png> "
            "Discharged home in stable condition.")
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"id": "e1", "note": note, "question": "Which antibiotic?", "task": "QA",
                                "answer_a": "Ceftriaxone was given for five days.",
                                "answer_b": "The patient received vancomycin in the ICU."}) + "\n")
    _, sid = admin_logic.import_study(st, str(path), "", 1, "admin")
    shown = study_logic.start(st, sid, "bob", 10)
    by_text = {s.text: s.evidence for s in shown.slots if s.visible}
    supported = by_text["Ceftriaxone was given for five days."]
    assert "<mark" in supported and "Treated with ceftriaxone" in supported
    assert "&lt;img" in supported and "<img" not in supported  # the note is escaped, nothing loads
    assert "not supported" in by_text["The patient received vancomycin in the ICU."].lower() or \
        "no sentence" in by_text["The patient received vancomycin in the ICU."].lower()
    st.close()


def test_a_study_shows_raters_the_answer_check_only_when_the_admin_says_so(tmp_path):
    """Off by default (it could bias scores); on: each answer shows its findings, and what was shown is stored with
    the rating and exported."""
    from asclepius_ui.export import export

    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    note = "Furosemide 40 mg daily was started for heart failure. The left leg was swollen."
    rows = [{"id": "f1", "note": note, "question": "What was started?", "task": "QA",
             "answer_a": "Furosemide 40 mg daily was started.", "answer_b": "Furosemide 80 mg daily was started."}]
    for name, show in (("plain", False), ("checked", True)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        text, sid = admin_logic.import_study(st, str(path), name, 1, "admin", allow_duplicate=True,
                                             show_findings=show)
        assert ("answer check" in text) is show
        shown = study_logic.start(st, sid, "bob", 4)
        marked = {s.text: s.evidence for s in shown.slots if s.visible}
        wrong = marked["Furosemide 80 mg daily was started."]
        assert ('class="claim claim-' in wrong) is show and ("claims-verdict" in wrong) is show
        assert 'class="claim claim-' not in marked["Furosemide 40 mg daily was started."]
        study_logic.submit(st, shown.state, sid, "bob", [3, "", 2, ""] + [None, ""] * 2, 4)
        stored = {r["answer"]: r["findings"] for r in st.study_ratings(sid)}
        if show:
            assert stored["Furosemide 80 mg daily was started."]["findings"]
            assert not stored["Furosemide 40 mg daily was started."]["findings"]
        else:
            assert set(stored.values()) == {None}
    out = tmp_path / "study.jsonl"
    export(st, "study", "jsonl", out)
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(bool(r["findings"]) for r in exported) == 2  # the checked study's two answers
    st.close()
