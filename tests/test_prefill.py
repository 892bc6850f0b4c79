"""Reading the note ahead of the question (prefill on paste), on real tiny models: the answer's tokens are the same
with and without it, in whole or in part, and an Ask preempts a running prefill and continues from its chunks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from asclepius_ui import ask, prefill
from asclepius_ui.engines import GenerationSettings, LoadOptions, load_engine

SETTINGS = GenerationSettings(max_new_tokens=12, prompt_lookup=0)
QUESTION = "What medications was the patient discharged on?"


def _note(seed: int, days: int = 10) -> str:
    return (f"DISCHARGE SUMMARY {seed}\nPatient: {50 + seed}-year-old with COPD and CHF.\nHospital Course:\n"
            + "\n".join(f"Day {i}: ceftriaxone {seed} mg given, oxygen weaned, walked {i * seed} m in the hall."
                        for i in range(1, days)) + "\nDischarge medications: furosemide, metoprolol.\n")


@pytest.fixture(scope="module")
def torch_engine(tiny_bin_model):
    return load_engine(LoadOptions(str(tiny_bin_model), precision="fp32", device="cpu", prefill_chunk=16))


@pytest.fixture(scope="module")
def cold_engine(tiny_bin_model):
    return load_engine(LoadOptions(str(tiny_bin_model), precision="fp32", device="cpu", prefix_cache_entries=0))


def _stop_after(tokens: int) -> tuple[threading.Event, callable]:
    event = threading.Event()
    return event, lambda done, total: event.set() if done >= tokens else None


def test_transformers_prefill_whole_or_in_part_gives_the_same_tokens(torch_engine, cold_engine):
    note = _note(1)
    prompt = torch_engine.make_prompt(note, QUESTION)
    expected = cold_engine.generate(cold_engine.make_prompt(note, QUESTION), SETTINGS)
    torch_engine.prefix_cache.clear()
    stop, progress = _stop_after(40)
    part = torch_engine.prefill(prompt.prefix, stop, progress)
    assert 40 <= part.done < part.total and not part.complete  # stopped at a chunk boundary, chunks kept
    reused = torch_engine.prefix_cache.reused_tokens
    assert torch_engine.generate(prompt, SETTINGS).text == expected.text
    assert torch_engine.prefix_cache.reused_tokens - reused == part.done  # the Ask continued from those chunks
    torch_engine.prefix_cache.clear()
    whole = torch_engine.prefill(prompt.prefix)
    assert whole.complete and torch_engine.prefill(prompt.prefix).complete  # a kept note is not read again
    assert len(torch_engine.prefix_cache) == 1
    reused = torch_engine.prefix_cache.reused_tokens
    assert torch_engine.generate(prompt, SETTINGS).text == expected.text
    assert torch_engine.prefix_cache.reused_tokens - reused >= whole.total - 2  # all but the boundary token(s)
    usage = torch_engine.cache_usage()
    assert usage.entries == 1 and 0 < usage.nbytes <= usage.max_bytes


def test_llamacpp_keeps_two_notes_and_gives_the_same_tokens(gguf_engine):
    notes = [_note(2), _note(3)]
    prompts = [gguf_engine.make_prompt(n, QUESTION) for n in notes]
    cold = []
    for p in prompts:
        gguf_engine.states.clear()
        gguf_engine.llm.reset()
        cold.append(gguf_engine.generate(p, SETTINGS).text)
    gguf_engine.states.clear()
    gguf_engine.llm.reset()
    for p in prompts:  # two clinicians paste two notes: both are kept
        assert gguf_engine.prefill(p.prefix).complete
    assert len(gguf_engine.states) == 2
    hits = gguf_engine.states.hits
    assert gguf_engine.generate(prompts[0], SETTINGS).text == cold[0]  # restored, not evaluated again
    assert gguf_engine.states.hits == hits + 1
    assert gguf_engine.last_prefix_hit == len(gguf_engine.encode(prompts[0].prefix))
    assert gguf_engine.generate(prompts[1], SETTINGS).text == cold[1]


@pytest.fixture(scope="module")
def gguf_blocks(tiny_gguf):
    """The tiny GGUF with a 32-token physical batch: a note is read in several blocks."""
    engine = load_engine(LoadOptions(str(tiny_gguf), threads=1, n_ubatch=32, n_batch=64))
    yield engine
    engine.close()


def _last_logits(engine) -> np.ndarray:
    """The logits llama.cpp computed for the last token it evaluated (the prompt's, after a 1-token answer)."""
    import llama_cpp

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(engine.llm._ctx.ctx, -1),
                                 shape=(engine.llm.n_vocab(),)).copy()


def test_llamacpp_gives_the_same_logits_cold_after_a_read_in_part_or_whole_and_on_a_follow_up(gguf_blocks):
    """Exact floats, not only greedy tokens: llama.cpp rounds a token differently with other batch-mates, so every
    way of reaching the prompt (cold, a whole or stopped read-ahead, a follow-up reusing the context) must evaluate
    the same blocks."""
    engine, one = gguf_blocks, GenerationSettings(max_new_tokens=1, prompt_lookup=0)
    questions = [QUESTION, "Summarize the hospital course.", "What was the oxygen plan?"]

    def fresh():
        engine.states.clear()
        engine.llm.reset()

    for seed in range(3):
        note = _note(10 + seed, days=8 + seed)
        prompt, other = (engine.make_prompt(note, questions[(seed + k) % 3]) for k in (0, 1))
        fresh()
        engine.generate(prompt, one)
        cold, cold_text = _last_logits(engine), engine.generate(prompt, SETTINGS).text
        fresh()
        assert engine.prefill(prompt.prefix).complete
        engine.llm.reset()  # another request used the context meanwhile: the saved state is what remains
        engine.generate(prompt, one)
        assert engine.last_prefix_hit == len(engine.encode(prompt.prefix))
        assert np.array_equal(_last_logits(engine), cold), f"whole read-ahead, note {seed}"
        fresh()
        stop, progress = _stop_after(1 + seed * 20)
        part = engine.prefill(prompt.prefix, stop, progress)
        assert 0 < part.done < part.total and part.done % 32 == 0  # stopped at a block boundary, blocks kept
        engine.llm.reset()
        engine.generate(prompt, one)
        assert engine.last_prefix_hit == part.done  # continued from the blocks read
        assert np.array_equal(_last_logits(engine), cold), f"read-ahead stopped at {part.done}, note {seed}"
        fresh()
        engine.generate(other, SETTINGS)  # another question first: the follow-up reuses the note in the context
        engine.generate(prompt, one)
        assert engine.last_prefix_hit >= len(engine.encode(prompt.prefix))
        assert np.array_equal(_last_logits(engine), cold), f"follow-up, note {seed}"
        assert engine.generate(prompt, SETTINGS).text == cold_text
        # the clinician cuts the note's last line after it was read: the kept blocks that ran past the new end go
        short = engine.make_prompt(note[:note.rindex("Discharge medications")], questions[seed])
        fresh()
        engine.generate(short, one)
        short_cold = _last_logits(engine)
        fresh()
        assert engine.prefill(prompt.prefix).complete
        engine.generate(short, one)
        assert engine.last_prefix_hit % 32 == 0 and engine.last_prefix_hit > 0
        assert np.array_equal(_last_logits(engine), short_cold), f"shortened note, note {seed}"


def test_the_llamacpp_grid_cuts_at_each_block_and_the_note_end():
    from asclepius_ui.engines.llamacpp import block_ends, reuse_point

    assert block_ends(0, 100, 32) == [32, 64, 96, 100]
    assert block_ends(0, 100, 32, 70) == [32, 64, 70, 96, 100]  # the note's end is a cut
    assert block_ends(70, 100, 32, 70) == [96, 100]  # continuing a note read ahead: the same blocks after it
    assert block_ends(40, 40, 32) == []
    # What a kept prefix (its grid: note end, where its blocks ended) gives a prompt with the note ending at 70:
    assert reuse_point(70, 32, 70, (70, 70)) == 70  # the note read ahead, whole
    assert reuse_point(64, 32, 70, (70, 64)) == 64  # read ahead in part: the blocks done
    assert reuse_point(75, 32, 70, (70, 90)) == 70  # a follow-up: the note, not the question's shared opening
    assert reuse_point(150, 32, 70, (70, 140)) == 128  # a chat turn: up to the last block before the old answer
    assert reuse_point(80, 32, 70, (90, 120)) == 64  # the note shortened: its old block ran past 70
    assert reuse_point(70, 32, 70, (90, 120)) == 64
    assert reuse_point(80, 32, 70, (0, 120)) == 64  # a prompt without a note ran one block over 70
    assert reuse_point(80, 32, 0, (70, 120)) == 64  # and the other way round
    assert reuse_point(20, 32, 70, (70, 90)) == 0


def test_an_ask_preempts_a_prefill_and_continues_from_its_chunks(tiny_bin_model, cold_engine):
    engine = load_engine(LoadOptions(str(tiny_bin_model), precision="fp32", device="cpu", prefill_chunk=2))
    note, other = _note(4, days=13), _note(5, days=3)
    reader = prefill.prefiller(engine)
    started = threading.Event()
    job = ask.read_ahead(engine, note, "clinician-a")
    assert job is not None
    while job.done < 200 and not job.finished:  # into the note itself, past the template's opening
        started.wait(0.005)
    assert job.state == prefill.READING and job.done < job.total  # reading, two tokens at a time
    # Another clinician asks about another note: the read stops at its next chunk and waits for the answer.
    prepared = ask.prepare(engine, ask.Request(other, QUESTION, settings=SETTINGS))
    seen = set()
    for _ in ask.stream(prepared):
        seen.add(job.done)
        assert job.state != prefill.READING
    assert len(seen) == 1 and reader.preemptions >= 1
    paused_at = seen.pop()
    assert 200 <= paused_at < job.total
    # The same clinician asks mid-read: the Ask continues from the chunks already read, and the answer is the same.
    reused = engine.prefix_cache.reused_tokens
    prepared = ask.prepare(engine, ask.Request(note, QUESTION, settings=SETTINGS))
    answer = ask.generate(prepared)
    assert engine.prefix_cache.reused_tokens - reused >= paused_at
    assert answer.text == cold_engine.generate(cold_engine.make_prompt(note, QUESTION), SETTINGS).text
    assert reader.wait(job, timeout=120) and job.state == prefill.READY  # then the read resumes and finishes


def test_a_newer_note_cancels_the_older_read_of_the_same_session(tiny_bin_model):
    engine = load_engine(LoadOptions(str(tiny_bin_model), precision="fp32", device="cpu", prefill_chunk=2))
    first = ask.read_ahead(engine, _note(6), "s")
    second = ask.read_ahead(engine, _note(7), "s")
    assert first.state == prefill.CANCELLED and first.cancel.is_set()
    assert ask.read_ahead(engine, _note(7), "s") is second  # the same note while it is read: the same job
    assert prefill.prefiller(engine).wait(second, timeout=120) and second.state == prefill.READY
    assert "Note ready" in second.describe()
    assert ask.read_ahead(engine, "  ", "s") is None


def test_the_admin_sees_what_the_kept_notes_take(torch_engine, gguf_engine):
    from asclepius_ui.ui.admin_logic import note_memory
    from asclepius_ui.ui.context import AppContext

    torch_engine.prefix_cache.clear()
    torch_engine.prefill(torch_engine.make_prompt(_note(8), QUESTION).prefix)
    text = note_memory(AppContext(engine=torch_engine, contenders={"gguf": gguf_engine}))
    assert f"Notes kept by {torch_engine.model_id}: 1 of 4" in text and "MiB of 2048 MiB" in text
    assert "Notes kept by gguf:" in text


def test_a_remote_server_reads_the_note_only_when_asked_to_and_after_the_guard():
    from .openai_server import OpenAIServer

    note = _note(9, days=3)
    with OpenAIServer() as srv:
        plain = load_engine(LoadOptions("served", base_url=srv.base_url, api_mode="chat"))
        assert not plain.capabilities.prefill and ask.read_ahead(plain, note, "s", ask.GUARD_SEND) is None
        engine = load_engine(LoadOptions("served", base_url=srv.base_url, api_mode="chat", remote_prefill=True))
        assert ask.read_ahead(engine, note, "s") is None  # the privacy guard has not passed this note
        assert ask.read_ahead(engine, note, "s", ask.GUARD_HOLD) is None and srv.requests == []
        job = ask.read_ahead(engine, note, "s", ask.GUARD_REDACT)
        assert prefill.prefiller(engine).wait(job, timeout=60) and job.state == prefill.READY, job
        sent = srv.requests[-1]
        assert sent["max_tokens"] == 1 and "[Instruction Begin]" in sent["messages"][0]["content"]
        assert "COPD" in sent["messages"][0]["content"]


def test_transformers_reads_in_pieces_of_about_a_fifth_of_a_second():
    from asclepius_ui.engines.base import MIN_PIECE, YIELD_S, next_piece

    assert next_piece(32, YIELD_S / 100, 512) == 512  # fast: the physical batch, no more
    assert next_piece(32, YIELD_S * 4, 512) == MIN_PIECE  # slow (a 7B on a laptop): the smallest piece
    assert next_piece(64, YIELD_S / 2, 512) == 128  # otherwise about YIELD_S worth, in multiples of MIN_PIECE
    assert next_piece(32, 0.0, 16) == 16  # never past a small physical batch


def test_the_batch_page_reads_the_first_note_while_tasks_are_picked(torch_engine, tmp_path):
    import csv

    from asclepius_ui import batch
    from asclepius_ui.ui.batch_logic import columns

    path = tmp_path / "notes.csv"
    with path.open("w", newline="") as f:
        csv.DictWriter(f, ["id", "note"]).writerows([{"id": "id", "note": "note"}, {"id": "a", "note": _note(10)},
                                                     {"id": "b", "note": _note(11)}])
    torch_engine.prefix_cache.clear()
    cols, text = columns(torch_engine, str(path), "s")
    assert cols == ["id", "note"] and "Reading the first note ahead" in text
    job = prefill.prefiller(torch_engine).job("batch:s")
    assert prefill.prefiller(torch_engine).wait(job, timeout=120) and job.state == prefill.READY
    reused = torch_engine.prefix_cache.reused_tokens
    first = next(batch.answer_rows(torch_engine, batch.make_jobs(batch.read_table(path), ["Summarization"], None),
                                   SETTINGS))
    assert first.row["id"] == "a" and torch_engine.prefix_cache.reused_tokens - reused >= job.total - 2


def test_one_line_for_a_note_read_by_several_engines():
    a, b = prefill.Job("s", "note", state=prefill.READING, done=30, total=100), prefill.Job("s", "note")
    assert prefill.describe([a, b]) == "Reading the note… 15%"  # together, never which engine
    a.state, b.state = prefill.READY, prefill.READY
    assert prefill.describe([a, b]).startswith("Note ready")
    b.state, b.error = prefill.FAILED, "too long"
    assert "too long" in prefill.describe([a, b])
    assert prefill.describe([prefill.Job("s", "n", state=prefill.CANCELLED)]) == ""
