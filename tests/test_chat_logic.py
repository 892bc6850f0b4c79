"""The chat and compare handlers as plain functions, with a real tiny model, no browser."""

from __future__ import annotations

import json

import pytest

from asclepius_ui.storage import open_storage
from asclepius_ui.ui import chat_logic as logic
from asclepius_ui.ui import common, compare_logic
from asclepius_ui.ui.context import AppContext
from tests.openai_server import OpenAIServer
from tests.test_phi_guard import synthea_note

NOTE = ("DISCHARGE SUMMARY\nPatient: 64-year-old man\nHospital Course:\nCXR showed RLL infiltrate; treated for CAP "
        "with ceftriaxone and improved.\nFollow up with PCP in 1 week.\n")


def run(ctx, rid=None, note=NOTE, instr="What was the diagnosis?", preset=logic.GREEDY, max_new=6, guard=None,
        task="Free question"):
    form = logic.AskForm(note=note, task=task, instruction=instr, preset=preset, max_new_tokens=max_new, guard=guard)
    return list(logic.ask(ctx, rid, form, [], []))


@pytest.fixture()
def ctx(tiny_engine):
    return AppContext(engine=tiny_engine)


def test_an_answer_names_its_preset_and_keeps_where_in_the_note(ctx):
    outs = run(ctx)
    chat, turns, status, evidence = outs[-1]
    assert "preset greedy" in status and "preset greedy" in chat[-1]["content"]
    [snap] = turns
    assert snap["preset"] == "greedy" and snap["settings"]["preset"] == "greedy"
    assert set(snap["evidence"]) == {"spans", "unsupported"} and snap["settings"]["evidence"] == snap["evidence"]
    assert evidence.startswith('<div class="evidence">')
    assert ctx._stops == {} and ctx._running == set()  # nothing left behind


def test_presets():
    def settings(preset):
        return logic.AskForm(preset=preset, max_new_tokens=12, sampling=True, temperature=0.3, top_p=0.5, beams=4,
                             repetition_penalty=1.2).settings()

    paper = settings(logic.PAPER)
    assert (paper.num_beams, paper.do_sample, paper.temperature, paper.top_p, paper.max_new_tokens) == (
        5, True, 1.0, 1.0, 400)
    assert not paper.streams
    greedy = settings(logic.GREEDY)
    assert (greedy.num_beams, greedy.do_sample, greedy.max_new_tokens) == (1, False, 12) and greedy.streams
    custom = settings(logic.CUSTOM)
    assert (custom.num_beams, custom.do_sample, custom.temperature, custom.repetition_penalty) == (4, True, 0.3, 1.2)


def test_paper_preset_is_not_streamed_says_so_and_stops(ctx):
    rid, queued = common.new_request(ctx)
    assert queued == ""  # nothing else is running
    gen = logic.ask(ctx, rid, logic.AskForm(note=NOTE, instruction="Why?", preset=logic.PAPER), [], [])
    next(gen)  # the question is shown
    assert "beam search cannot stream" in next(gen)[2]
    assert common.stop(ctx, rid) is None  # running now: its own stream says "Stopping…", then "Stopped."
    chat, turns, status, _ = list(gen)[-1]
    assert status.startswith("Stopped.") and "preset paper" in status and turns[0]["settings"]["num_beams"] == 5


def test_stop_cancels_a_request_still_in_the_queue(ctx):
    running, _ = common.new_request(ctx)
    ctx.claim(running)  # another generation holds the model
    rid, queued = common.new_request(ctx)  # made when Ask is pressed
    assert queued.startswith(common.QUEUED) and rid[:8] in queued
    ctx.finish(running)
    assert common.stop(ctx, rid) == "Stopped while waiting in the queue: it will not run."
    outs = run(ctx, rid=rid)
    assert len(outs) == 1
    chat, turns, status, evidence = outs[0]
    assert chat == turns == evidence == logic.KEEP  # the answers on screen stay as they are
    assert status.startswith("Stopped while waiting in the queue")
    assert common.stop(ctx, rid) is None  # finished: nothing to stop


def test_bad_input_and_bugs_get_escaped_boxes(ctx):
    [(_, _, status, _)] = run(ctx, note="")
    assert "The note is empty" in status
    [(_, _, status, _)] = run(ctx, instr="What is the expanded form of the abbreviation '<abbreviation>' as used in "
                                       "this discharge summary?", task="Abbreviation expansion")
    assert "Fill in the abbreviation" in status
    broken = AppContext(engine=None)
    [(_, _, status, _)] = run(broken, instr="<img src=x>")
    assert "Internal error" in status and "<img" not in status


def test_truncate_and_budget(ctx):
    long_note = NOTE * 200
    assert "over by" in logic.budget_text(ctx.engine, long_note, "Summarize.", 100)
    kept, cut, opened, msg = logic.do_truncate(ctx.engine, long_note, "Summarize.", 100, "Keep the start")
    assert opened and kept + cut == long_note and msg.startswith("Cut ")


def test_remote_engine_gets_nothing_until_the_note_is_confirmed(tiny_engine):
    import random

    from asclepius_ui.engines.openai import RemoteEngine, RemoteOptions

    note, ids = synthea_note(random.Random(3))
    with OpenAIServer(answer="Treated with ceftriaxone.") as srv:
        remote = RemoteEngine(RemoteOptions(model="gpt-remote", base_url=srv.base_url, api_key="sk-test",
                                            api_mode="chat"))
        ctx = AppContext(engine=remote)
        [(_, turns, status, _)] = run(ctx, note=note)
        assert "Nothing was sent" in status and "PERSON_LABELLED" in status and not srv.requests and turns == []
        *_, (chat, turns, status, _) = run(ctx, note=note, guard=logic.GUARD_REDACT)
        sent = srv.requests[-1]["messages"][0]["content"]
        assert ids["name"] not in sent and ids["ssn"] not in sent and "ceftriaxone 1 g IV daily" in sent
        assert turns[0]["guard"]["sent"] == "redacted" and ids["name"] not in turns[0]["note"]
        *_, (chat, turns, status, _) = run(ctx, note=note, guard=logic.GUARD_SEND)
        assert ids["name"] in srv.requests[-1]["messages"][0]["content"]
        assert turns[0]["guard"]["sent"] == "as is"


def test_compare_answers_both_and_reveals_after_the_vote(tiny_engine, tiny_safetensors_model, tmp_path):
    from asclepius_ui.engines import LoadOptions, load_engine

    other = load_engine(LoadOptions(str(tiny_safetensors_model), precision="fp32", device="cpu"))
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    ctx = AppContext(engine=tiny_engine, contenders={other.model_id: other}, storage=st)
    outs = list(compare_logic.answer_both(ctx, NOTE, "Free question", "Why admitted?", 5, None))
    a, b, _, status, _, state, ev_a, ev_b, enabled = outs[-1]
    assert status.startswith("Both answers are ready") and enabled and state["snaps"]["A"]["answer"] == a
    assert "evidence" in state["snaps"]["B"] and ev_a.startswith('<div class="claims">')
    assert '<div class="evidence">' in ev_a
    assert state["snaps"]["A"]["claims"]["findings"] is not None
    st_text, reveal, state, enabled = compare_logic.vote(ctx, "tie", state, 3, None, "local")
    assert st_text.startswith("Saved comparison") and not enabled
    assert set(state["names"].values()) == set(ctx.all_engines()) and 'id="cmp-name-a"' in reveal
    assert compare_logic.vote(ctx, "tie", state, 3, None, "local")[0].startswith("Already saved")
    [c] = st.comparisons()
    assert c["winner"] == "tie"
    [r] = [r for r in st.ratings() if r["comparison_id"] == c["id"]]
    assert r["settings"]["evidence"]["spans"] is not None
    st.close()


def test_a_rating_stores_and_exports_what_the_rater_saw(ctx, tmp_path):
    from asclepius_ui.export import export
    from asclepius_ui.ui.rating_widget import submit

    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    *_, (chat, turns, status, _) = run(ctx, instr="Was ceftriaxone given?")
    message, _, _ = submit(st, turns, None, 3, [], "", None, {}, "local")
    assert message.startswith("Saved rating")
    out = tmp_path / "ratings.jsonl"
    export(st, "ratings", "jsonl", out)
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["settings"]["preset"] == "greedy"
    assert row["settings"]["evidence"] == turns[0]["evidence"]  # the spans the rater was shown
    st.close()
