"""The smaller findings of the security review, each with the input that broke it: server-side strings escaped
where they enter HTML, a "$" in a task label, a big CSV cell, deeply nested JSON, an absurd study id, formulas
hidden behind blanks or fullwidth signs."""

from __future__ import annotations

import csv
import json

import pytest

from asclepius_ui.data_sources import SourceError, read_records
from asclepius_ui.export import neutralise, write_rows
from asclepius_ui.storage import new_uid, open_storage
from asclepius_ui.studies import StudyFileError, parse_study_text
from asclepius_ui.text_input import LIMITS
from asclepius_ui.ui import analysis_logic, study_logic
from asclepius_ui.ui.common import escape_html
from asclepius_ui.ui.context import AppContext

HOSTILE = '<img src=http://198.51.100.7/x onerror="alert(1)">'


def test_a_model_name_is_text_not_html(tmp_path, tiny_bin_model):
    from asclepius_ui.engines import LoadOptions, load_engine
    from asclepius_ui.ui.chat import model_info

    folder = tmp_path / HOSTILE.replace("/", "|")
    folder.symlink_to(tiny_bin_model, target_is_directory=True)
    engine = load_engine(LoadOptions(str(folder), precision="fp32", device="cpu"))
    info = model_info(AppContext(engine=engine))
    assert "<img" not in info and "&lt;img src=http:" in info and "&quot;alert(1)&quot;" in info
    assert escape_html(None) == "" and escape_html("a<b & 'c'") == "a&lt;b &amp; &#x27;c&#x27;"


def test_a_dollar_in_a_task_label_does_not_break_the_analysis(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    text = "".join(json.dumps({"id": f"i{k}", "note": f"n{k}", "question": "q", "task": "Price in $x^$ dollars",
                               "answer_m$1": "a", "answer_m$2": "b"}) + "\n" for k in range(4))
    sid = st.create_study("costs $1 $x^$", parse_study_text(text, "jsonl"), overlap=2, created_by="admin")
    for rater in ("e1", "e2"):
        while (a := st.next_assignment(sid, rater)) is not None:
            st.submit_item(assignment_id=a["assignment_id"], rater=rater, uid=new_uid(), seconds=1,
                           scores={x["answer_id"]: (1 + i, "") for i, x in enumerate(a["answers"])})
    show, (status, means, *_rest) = analysis_logic.refresh(st, analysis_logic.ALL, 200, None)
    assert show and status.startswith("Computed from"), status
    st.close()


def _study_csv(note: str) -> str:
    rows = [["id", "note", "question", "task", "answer_a", "answer_b"], ["i1", note, "q?", "QA", "x", "y"]]
    out = []
    for r in rows:
        out.append(",".join('"' + c.replace('"', '""') + '"' for c in r))
    return "\n".join(out) + "\n"


def test_big_csv_cells_up_to_the_limit_import_and_larger_ones_get_a_message():
    parsed = parse_study_text(_study_csv("x" * 200_000), "csv")  # over the csv module's 128 KB default
    assert len(parsed.items[0].note) == 200_000
    with pytest.raises(StudyFileError, match="over the .* KB limit|larger than"):
        parse_study_text(_study_csv("x" * (LIMITS.note_bytes + 4096)), "csv")


def test_deeply_nested_json_is_a_message(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(StudyFileError, match="nested too deeply"):
        parse_study_text('{"note": ' + deep + "}\n", "jsonl")
    f = tmp_path / "deep.jsonl"
    f.write_text('{"note": ' + deep + "}\n")
    with pytest.raises(SourceError, match="nested too deeply"):
        read_records(str(f))
    f = tmp_path / "deep.json"
    f.write_text(deep)
    with pytest.raises(SourceError, match="nested too deeply"):
        read_records(str(f))


def test_an_absurd_study_id_is_a_message(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    for sid in (1e308, "1e308", 2**40):
        shown = study_logic.start(st, sid, "bob", 2)
        assert "error-box" in shown.status and "Internal error" not in shown.status
        assert "must be from 1 to" in shown.status
    shown = study_logic.skip(st, {"view": {"assignment_id": 1}, "shown": 0.0}, "1e308", "bob", 2)
    assert "Internal error" not in shown.status and "must be from 1 to" in shown.status
    st.close()


@pytest.mark.parametrize("cell", [" =1+1", "\n=1+1", "\t =HYPERLINK(\"x\")", "\uff1dcmd|' /C calc'!A0", "  +1",
                                  "\r\n@SUM(A1)", "\u3000=1"])
def test_hidden_formulas_are_defused(cell, tmp_path):
    assert neutralise(cell).startswith("'")
    out = tmp_path / "x.csv"
    write_rows([{"comment": cell}], ["comment"], "csv", out, progress=False)
    with out.open(newline="") as f:
        assert next(csv.DictReader(f))["comment"] == "'" + cell


def test_plain_text_is_left_alone():
    for cell in ("fine", "a = b", "  indented", "", "3 + 4"):
        assert neutralise(cell) == cell
    assert json.dumps(neutralise("x")) == '"x"'
