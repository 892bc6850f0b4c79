"""``asclepius check`` / ``python -m eval.check`` over generations files, and the report's faithfulness section."""

import json

import pytest

from asclepius_ui import cli
from eval import check, report

NOTE = ("Hospital Course: He was started on Lasix 40 mg IV daily. Potassium was 3.1 and was repleted. "
        "Ultrasound showed a DVT in the left popliteal vein. Denies fever.")


@pytest.fixture(scope="module")
def generations(tmp_path_factory):
    rows = [
        {"id": "1", "note": NOTE, "question": "Meds?", "task": "qa", "model": "good",
         "answer": "He was started on Lasix 40mg IV daily."},
        {"id": "1", "note": NOTE, "question": "Meds?", "task": "qa", "model": "bad",
         "answer": "He was started on warfarin 80 mg daily."},
        {"id": "2", "note": NOTE, "question": "Findings?", "task": "summary", "model": "bad",
         "answer": "A DVT was found in the right popliteal vein. He has a fever."},
    ]
    p = tmp_path_factory.mktemp("gen") / "answers.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def test_cli_checks_every_answer_and_writes_the_findings(generations, tmp_path, capsys):
    out = tmp_path / "checked.jsonl"
    assert cli.main(["check", str(generations), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "3 answers in 3 rows" in printed
    lines = printed.splitlines()
    bad_qa = next(line for line in lines if line.split()[:2] == ["bad", "qa"])
    assert bad_qa.split()[2:6] == ["1", "100%", "100%", "100%"]  # answers, any finding, number, drug
    good = next(line for line in lines if line.split()[:1] == ["good"])
    assert good.split()[3] == "0%"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["check"]["findings"] == [] and rows[0]["answer"].startswith("He was started")
    assert {f["kind"] for f in rows[2]["check"]["findings"]} == {"side", "negation"}
    assert check.faithfulness_of(rows)["any finding"].tolist() == [1.0, 1.0, 0.0]


def test_wide_rows_are_checked_per_model():
    rows = [{"note": NOTE, "task": "qa", "answer_a": "Potassium was 3.1.", "answer_b": "Potassium was 5.1."}]
    checked, records = check.check_rows(rows, progress=False)
    assert checked[0]["check_a"]["findings"] == [] and checked[0]["check_b"]["kinds"] == {"number": 1}
    assert records.set_index("model")["any"].to_dict() == {"a": False, "b": True}


@pytest.mark.parametrize("content, message", [
    ('{"note": "x", "answer": "y"}\nnot json\n', "line 2: not valid JSON"),
    ('{"question": "q", "answer": "y"}\n', "missing column(s) note"),
    ('{"note": "x", "question": "q"}\n', "No answers to check"),
    ('{"note": "  ", "answer": "y"}\n', "Row 1 has no note"),
])
def test_bad_input_gets_a_clear_error(tmp_path, capsys, content, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(content, encoding="utf-8")
    assert check.main([str(p), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert check.main([str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err


def test_report_has_a_faithfulness_section(generations, tmp_path):
    _, _, path = report.build_report(tmp_path, generations=[generations])
    text = path.read_text(encoding="utf-8")
    assert "## Faithfulness to the note (claim check)" in text and "3 answers checked" in text
    assert "| bad | 2 | 100% | 50% | 50% | 50% | 50% |" in text  # model, answers, any, number, drug, side, negation
    assert "| good | qa | 1 | 0% |" in text
