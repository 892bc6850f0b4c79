"""The claim check: numbers, drugs, sides and negation against the note; near-misses that must not be findings."""

import pytest

from asclepius_ui.claims import Check, check_answer, quantities, render_answer_html

NOTE = """DISCHARGE SUMMARY
HPI: 68 y/o man with atrial fibrillation admitted on 03/14/2023 with left leg swelling for 2 weeks.
He reports chest pain on exertion. Denies fever or chills. Possible pneumonia on the admission film.
Hospital Course: Lower extremity ultrasound showed a DVT in the left popliteal vein. He was started on
Lasix 40 mg IV daily and apixaban 5 mg twice a day. BP 150/90 on arrival. Potassium was 3.1 and was repleted.
He was discharged home on hospital day three with follow-up in two weeks.
"""


def kinds(note: str, answer: str) -> list[str]:
    return [f.kind for f in check_answer(note, answer).findings]


@pytest.mark.parametrize("answer", [
    "He was started on Lasix 40mg IV daily.",  # "40 mg" = "40mg"
    "He was started on furosemide 40 mg IV daily.",  # brand in the note, generic in the answer
    "He had swelling of the left leg for two weeks.",  # "2 weeks" = "two weeks"
    "He had left leg swelling for 14 days.",  # 2 weeks = 14 days
    "He was admitted on March 14, 2023.",  # the date in another format
    "Apixaban 5 mg was given twice a day and his BP was 150/90.",
    # one sentence drawing on two note sentences
    "A DVT was found in the left popliteal vein and he was started on apixaban 5 mg twice a day.",
    "He denies fever.",
    "He reports exertional chest pain.",
])
def test_near_misses_are_not_findings(answer):
    check = check_answer(NOTE, answer)
    assert check.findings == [], check.findings
    assert check.verdict == "Every number, drug, side and negation checked is in the note."


@pytest.mark.parametrize("answer, kind, text", [
    ("He was started on Lasix 80 mg IV daily.", "number", "80 mg"),
    ("Potassium was 3.8 and was repleted.", "number", "3.8"),
    ("He was admitted on 03/15/2023 with leg swelling.", "number", "03/15/2023"),
    ("He was started on warfarin 5 mg twice a day.", "drug", "warfarin"),
    ("He was started on Coumadin 5 mg twice a day.", "drug", "Coumadin"),
    ("Ultrasound showed a DVT in the right popliteal vein.", "side", "right"),
    ("He was admitted with right leg swelling for 2 weeks.", "side", "right"),
    ("He reports no chest pain on exertion.", "negation", "chest pain"),
    ("He reports fever and chills.", "negation", "fever"),
    ("He has pneumonia on the admission film.", "certainty", "pneumonia"),
])
def test_wrong_claims_are_findings(answer, kind, text):
    check = check_answer(NOTE, answer)
    found = [(f.kind, f.text) for f in check.findings]
    assert any(k == kind and text.lower() in t.lower() for k, t in found), found
    f = next(f for f in check.findings if f.kind == kind)
    assert answer[f.start:f.end] == f.text and f.reason and f.closest


STROKE = ("58F brought in by EMS with right arm weakness. Hx: AFib not on anticoagulation (stopped apixaban 2 months "
          "ago due to cost), HTN. ED: NIHSS 9. Post procedure NIHSS 3. Creatinine went from 1.1 to 1.4.")


@pytest.mark.parametrize("answer", [
    "A 58-year-old woman presented with right arm weakness.",  # "58F"
    "Her NIHSS improved from 9 to 3.",  # two numbers, not a range
    "She had stopped apixaban two months earlier because of cost.",  # the "not" before the bracket ends there
    "Creatinine rose from 1.1 to 1.4.",
])
def test_paraphrase_is_not_a_finding(answer):
    assert check_answer(STROKE, answer).findings == []


def test_a_dose_of_another_drug_is_a_finding():
    answer = "He was started on apixaban 40 mg twice a day."  # 40 mg is in the note, but for Lasix
    check = check_answer(NOTE, answer)
    assert [(f.kind, f.text) for f in check.findings] == [("number", "40 mg")]
    assert "only for something else" in check.findings[0].reason


def test_made_up_sentence_is_unsupported_and_verdict_counts_each_kind_once():
    answer = ("He underwent a liver transplant. He was started on warfarin 10 mg daily. "
              "He was started on warfarin 10 mg daily.")
    check = check_answer(NOTE, answer)
    assert "unsupported" in {f.kind for f in check.findings}
    # the repeated sentence is marked where it stands but counted once
    assert sum(f.text == "warfarin" for f in check.findings) == 2
    assert check.kinds["drug"] == 1 and check.sentences == 2
    assert check.verdict.startswith("1 dose and 1 drug are not in the note")
    assert "1 sentence has nothing in the note" in check.verdict
    stored = check.as_dict()
    assert stored["verdict"] == check.verdict and stored["kinds"]["drug"] == 1
    assert Check.from_dict(stored, answer).verdict == check.verdict


def test_quantities_normalise_units_words_and_dates():
    got = {(q.values, q.unit) for q in quantities("5mg, 1 g, two tablets, 65-year-old, 25-30%, 1/2/2020, Jan 2, 2020")}
    assert ((5.0,), "mg") in got and ((1000.0,), "mg") in got and ((2.0,), "tab") in got
    assert ((65.0,), "year") in got and ((25.0, 30.0), "%") in got
    assert sum(1 for v, u in got if u == "date" and v == (2020.0, 1.0, 2.0)) == 1  # both formats, one date


def test_html_marks_findings_inline_escapes_everything_and_names_the_kind():
    note = 'Given <img src="http://evil.example/x.png"> aspirin 81 mg daily.'
    answer = "Given <b>aspirin</b> 325 mg daily <script>alert('x')</script>."
    out = render_answer_html(check_answer(note, answer))
    assert "<script>" not in out and "<b>" not in out and "<img" not in out
    assert "&lt;b&gt;aspirin&lt;/b&gt;" in out and "&lt;img src=" in out  # the closest note sentence, escaped
    assert '<mark class="claim claim-number"' in out and ">325 mg</mark>" in out
    assert "dose not in the note: </span>" in out  # said in words for screen readers
    assert 'title="dose not in the note: 325 mg is not in the note.' in out
    assert "1 dose is not in the note." in out and 'role="status"' in out


def test_correct_answer_renders_without_marks():
    out = render_answer_html(check_answer(NOTE, "He was started on Lasix 40 mg IV daily."))
    assert "<mark" not in out and "✓ Every number, drug, side and negation checked is in the note." in out


def test_empty_inputs():
    assert check_answer(NOTE, "").verdict == "Nothing to check."
    for answer in ("Yes.", "\ufffd"):  # nothing looked up: not said to be "all in the note", and no check mark
        check = check_answer(NOTE, answer)
        assert check.verdict == "No number, drug, side or negation here to check against the note.", answer
        assert "✓" not in render_answer_html(check)
    assert {"drug", "number"} <= set(kinds("", "Aspirin 81 mg daily."))
