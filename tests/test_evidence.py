"""Where in the note: supporting sentences ranked, unsupported answer sentences flagged, everything escaped."""

from asclepius_ui.evidence import find_evidence, render_html, sentence_spans
from asclepius_ui.examples import example_notes

NOTE = example_notes()["cardiology chf"]


def test_sentence_spans_cover_lines_and_sentences():
    text = "Hospital Course:\nOn arrival she was short of breath. CXR showed fluid.\n\n- Furosemide 40 mg PO daily\n"
    pieces = [text[s:e] for s, e in sentence_spans(text)]
    assert pieces == ["Hospital Course:", "On arrival she was short of breath.", "CXR showed fluid.",
                      "- Furosemide 40 mg PO daily"]


def test_supporting_sentences_are_ranked_and_made_up_ones_flagged():
    answer = ("She was given IV furosemid 40 mg twice a day. "  # a typo still matches
              "She received a liver transplant.")
    ev = find_evidence(NOTE, answer)
    assert ev.spans and ev.spans[0].rank == 1
    assert "IV furosemide 40 mg twice a day" in ev.spans[0].text
    assert NOTE[ev.spans[0].start:ev.spans[0].end] == ev.spans[0].text
    assert [s.score for s in ev.spans] == sorted((s.score for s in ev.spans), reverse=True)
    assert ev.unsupported == ["She received a liver transplant."]
    stored = ev.as_dict()
    assert stored["unsupported"] == ["She received a liver transplant."]
    assert stored["spans"][0]["text"] == ev.spans[0].text


def test_an_answer_from_the_note_is_not_flagged():
    ev = find_evidence(NOTE, "Her potassium dropped to 3.1 on day 2 and was replaced.")
    assert ev.unsupported == [] and ev.spans[0].score == 1.0


def test_html_is_escaped_and_marks_the_spans():
    note = 'Given <img src="http://evil.example/x.png"> aspirin 81 mg.\nSeen by <script>alert(1)</script> cardiology.'
    ev = find_evidence(note, "Aspirin 81 mg was given. <b>Warfarin</b> was started.")
    out = render_html(note, ev)
    assert "<img" not in out and "<script>" not in out and "<b>" not in out
    assert "&lt;img src=" in out and "&lt;b&gt;Warfarin" in out
    assert out.count('<mark class="ev-mark"') == len(ev.spans) >= 1
    assert "Nothing in the note supports" in out
    assert render_html(note, ev.as_dict()) == out  # what a rating stored renders the same


def test_empty_inputs():
    assert find_evidence("", "Anything.").unsupported == ["Anything."]
    assert find_evidence(NOTE, "").spans == []
    assert "No sentence of the note supports" in render_html(NOTE, find_evidence(NOTE, "Okay."))


def test_rendering_wraps_does_not_number_twice_and_lists_a_loop_once():
    note = "Discharge Diagnosis: CHF. " * 80  # one long line, as many real notes are
    looping = "She received a liver transplant. " * 12
    ev = find_evidence(note, "Discharge diagnosis was CHF. " + looping)
    assert ev.unsupported == ["She received a liver transplant."]  # repeats once
    stored = {**ev.as_dict(), "unsupported": ["A.", "A.", "B.", "C.", "D.", "E."]}  # stored before the fix
    out = render_html(note, stored)
    assert out.count("“A.”") == 1 and "and 2 more sentences" in out and "“E.”" not in out
    assert "white-space:pre-wrap" in out and "overflow-wrap:anywhere" in out  # the highlighted note wraps
    assert 'list-style:none' in out  # the badge is the only number
    assert '<span class="ev-rank"' in out and "</span> Discharge Diagnosis" in out  # not glued to the text
