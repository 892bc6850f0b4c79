"""The llama.cpp backend on a tiny GGUF made by our converter: tokens, stopping, streaming, budget, concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from asclepius_ui.engines import GenerationSettings, LoadOptions, ModelLoadError, UnsupportedError, load_engine

from .cut_answers import cut_answers

pytest.importorskip("llama_cpp")

NOTE = ("DISCHARGE SUMMARY\nPatient: 64-year-old man\nHospital Course:\nCXR showed RLL infiltrate; treated for CAP "
        "with ceftriaxone and improved. Temp 38.5 °C, café-au-lait spots.\nFollow up with PCP in 1 week.\n")
GREEDY = GenerationSettings(max_new_tokens=24)


def test_loads_through_the_registry_with_gguf_metadata(gguf_engine, tiny_gguf):
    e = gguf_engine
    assert e.backend == "llamacpp" and e.precision == "gguf-f16" and "F16" in e.precision_label
    assert e.context_length == 1024  # from the GGUF (the tiny model's max_position_embeddings)
    assert e.template == "asclepius" and e.revision.startswith("gguf-")
    assert not e.capabilities.beams and e.capabilities.prefix_cache and e.capabilities.tokenizer
    assert any("not a known Asclepius variant" in n for n in e.notices)


def test_bos_once_and_same_ids_as_transformers(gguf_engine, tiny_engine):
    prompt = gguf_engine.prompt(NOTE, "What was the diagnosis?")
    ids = gguf_engine.encode(prompt)
    assert ids[0] == 1 and ids[1] != 1 and ids.count(1) == 1
    assert ids == tiny_engine.encode(prompt)  # the GGUF carries the same sentencepiece vocabulary
    assert gguf_engine.count_tokens(prompt) == len(ids)


def test_literal_special_tokens_in_a_note_stay_text(gguf_engine):
    note = "Patient typed </s> and <s> into the form; <unk> too."
    ids = gguf_engine.encode(gguf_engine.prompt(note, "Summarize."))
    assert ids.count(1) == 1 and 2 not in ids and 0 not in ids  # one BOS, no EOS, no UNK control token
    spans = gguf_engine.token_spans(note)
    assert spans[0][0] == 0 and spans[-1][1] == len(note)
    assert all(a <= b for a, b in spans)


def test_token_spans_cover_the_text_with_multibyte_characters(gguf_engine):
    spans = gguf_engine.token_spans(NOTE)
    assert spans[0][0] == 0 and spans[-1][1] == len(NOTE)
    assert all(s[1] <= t[0] + 1 for s, t in zip(spans, spans[1:], strict=False))


def test_streaming_grows_and_matches_generate(gguf_engine):
    prompt = gguf_engine.prompt(NOTE, "Summarize the hospital course.")
    settings = GREEDY.replace(max_new_tokens=40)
    updates = list(gguf_engine.stream(prompt, settings, min_interval=0.0))
    final = updates[-1]
    assert final.done and not final.stopped and final.new_tokens == 40
    assert len(updates) > 10 and all(u.text == final.text[:len(u.text)] for u in updates)  # prefixes, no mojibake
    assert gguf_engine.generate(prompt, settings).text == final.text  # greedy is deterministic
    assert final.prompt_tokens == len(gguf_engine.encode(prompt)) and final.first_token_s is not None


def test_stop_event_ends_this_request(gguf_engine):
    prompt = gguf_engine.prompt(NOTE, "Summarize.")
    stop = threading.Event()
    seen = 0
    for update in gguf_engine.stream(prompt, GREEDY.replace(max_new_tokens=500), stop, min_interval=0.0):
        seen = update.new_tokens
        if seen >= 3:
            stop.set()
    assert update.done and update.stopped and 3 <= update.new_tokens <= 4
    # the next request is unaffected
    assert gguf_engine.generate(prompt, GREEDY.replace(max_new_tokens=5)).new_tokens == 5


def test_stops_at_eos(tiny_gguf):
    """With the GGUF's EOS id pointed at the 4th greedy token, the answer ends right before it."""
    plain = load_engine(LoadOptions(str(tiny_gguf), threads=1))
    prompt = plain.prompt(NOTE, "Summarize.")
    first = plain.generate(prompt, GREEDY.replace(max_new_tokens=8))
    ids = plain.encode(prompt)
    tokens = [int(t) for t, _ in zip(plain.llm.generate(ids, temp=0.0, top_k=1, min_p=0.0, repeat_penalty=1.0),
                                     range(8), strict=False)]
    plain.close()
    k = next(i for i, t in enumerate(tokens) if t not in tokens[:i] and i >= 3)
    eos = load_engine(LoadOptions(str(tiny_gguf), threads=1,
                                  extra={"llama_cpp": {"kv_overrides": {"tokenizer.ggml.eos_token_id": tokens[k]}}}))
    try:
        result = eos.generate(prompt, GREEDY.replace(max_new_tokens=8))
    finally:
        eos.close()
    assert result.new_tokens == k and not result.stopped
    assert first.text.startswith(result.text) and len(result.text) < len(first.text)


def test_budget_and_truncation_use_the_gguf_tokenizer(gguf_engine):
    long_note = NOTE + "\n".join(f"Day {i}: stable, walked in the hall, ate well." for i in range(200))
    question = "Summarize."
    b = gguf_engine.budget(gguf_engine.prompt(long_note, question), 100)
    assert b.prompt_tokens == len(gguf_engine.encode(gguf_engine.prompt(long_note, question))) and not b.fits
    cut = gguf_engine.truncate_note(long_note, question, 100)
    assert cut.kept + cut.cut == long_note and cut.cut_tokens > 0
    assert gguf_engine.budget(gguf_engine.prompt(cut.kept, question), 100).fits
    with pytest.raises(Exception, match="over the model's context"):
        gguf_engine.check_fits(gguf_engine.prompt(long_note, question), GenerationSettings(max_new_tokens=100))


def test_two_concurrent_requests_give_their_solo_answers(gguf_engine):
    prompts = [gguf_engine.prompt(NOTE, q) for q in ("Summarize.", "List the medications.")]
    alone = [gguf_engine.generate(p, GREEDY).text for p in prompts]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda p: gguf_engine.generate(p, GREEDY).text, prompts))
    assert together == alone


def test_follow_up_question_reuses_the_note_prefix(gguf_engine):
    note = NOTE + "\n".join(f"Day {i}: stable, afebrile, tolerating diet." for i in range(10))
    first, second = (gguf_engine.make_prompt(note, q) for q in ("Summarize.", "What was the diagnosis?"))
    gguf_engine.generate(first, GREEDY)
    cached = gguf_engine.generate(second, GREEDY)
    common = next(i for i, (x, y) in enumerate(zip(first.ids, second.ids, strict=False)) if x != y)
    note_end = len(gguf_engine.encode(second.prefix))
    assert common >= note_end and gguf_engine.last_prefix_hit == note_end  # the note was not evaluated again
    gguf_engine.llm.reset()  # forget the KV cache: the same answer from scratch
    gguf_engine.states.clear()
    fresh = gguf_engine.generate(second, GREEDY)
    assert gguf_engine.last_prefix_hit == 0 and fresh.text == cached.text


def test_beam_search_is_a_clear_unsupported_error(gguf_engine):
    with pytest.raises(UnsupportedError, match="no beam search"):
        gguf_engine.generate(gguf_engine.prompt(NOTE, "Summarize."), GenerationSettings.from_preset("paper"))


def test_sampling_settings_are_used(gguf_engine):
    prompt = gguf_engine.prompt(NOTE, "Summarize.")
    hot = GenerationSettings(max_new_tokens=30, do_sample=True, temperature=5.0, top_p=1.0)
    texts = {gguf_engine.generate(prompt, hot).text for _ in range(3)}
    assert len(texts) > 1  # a hot random model does not repeat itself


def test_load_errors_are_clear(tmp_path, tiny_gguf, monkeypatch):
    with pytest.raises(ModelLoadError, match="not found"):
        load_engine(LoadOptions(str(tmp_path / "missing.gguf")))
    (tmp_path / "a.gguf").write_bytes(b"not a gguf")
    (tmp_path / "b.gguf").write_bytes(b"not a gguf")
    with pytest.raises(ModelLoadError, match="--gguf-file"):
        load_engine(LoadOptions(str(tmp_path), backend="llamacpp"))
    with pytest.raises(ModelLoadError, match="could not read"):
        load_engine(LoadOptions(str(tmp_path), gguf_file="a.gguf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline"):
        load_engine(LoadOptions("someone/Asclepius-7B-GGUF", gguf_file="asclepius-7b.Q4_K_M.gguf"))


def test_registry_context_is_checked(tmp_path, tiny_gguf):
    named = tmp_path / "Asclepius-7B.f16.gguf"
    named.symlink_to(tiny_gguf)
    e = load_engine(LoadOptions(str(named), threads=1))
    try:
        assert e.spec.name == "Asclepius-7B" and e.context_length == 1024
        assert any("2048" in n and "1024" in n for n in e.notices)
    finally:
        e.close()



def test_prompt_lookup_drafting_gives_the_same_greedy_answers(tiny_gguf, gguf_engine):
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    class Counted(LlamaPromptLookupDecoding):  # llama-cpp-python's own drafter, counting its drafts
        drafts = 0

        def __call__(self, input_ids, *args, **kwargs):
            Counted.drafts += 1
            return super().__call__(input_ids, *args, **kwargs)

    drafting = load_engine(LoadOptions(str(tiny_gguf), threads=1, draft_prompt_lookup=10))
    drafting._draft = Counted(num_pred_tokens=10)
    try:
        assert drafting.capabilities.prompt_lookup and not gguf_engine.capabilities.prompt_lookup
        assert not any("may differ" in n for n in drafting.notices)  # f16: the same tokens, no warning
        for question in ("What is the expanded form of 'CAP'?", "Summarize the hospital course.",
                         "List the medications."):
            prompt = drafting.prompt(NOTE, question)
            settings = GenerationSettings(max_new_tokens=40, prompt_lookup=10)
            drafted = drafting.generate(prompt, settings)
            assert (drafted.text, drafted.new_tokens) == (lambda r: (r.text, r.new_tokens))(
                gguf_engine.generate(prompt, settings.replace(prompt_lookup=0)))
            before = Counted.drafts
            off = drafting.generate(prompt, settings.replace(prompt_lookup=0))  # the draft is per request
            assert (off.text, off.new_tokens) == (drafted.text, drafted.new_tokens) and Counted.drafts == before
        assert Counted.drafts > 0
    finally:
        drafting.close()




def test_an_answer_cut_in_the_middle_of_a_character_leaves_it_out(gguf_engine):
    """Cut by the token limit (or Stop) just after the first byte of a character, the answer leaves it out."""
    prompt = gguf_engine.prompt(NOTE, "Summarize.")
    gguf_engine.generate(prompt, GREEDY.replace(max_new_tokens=13))
    ids = gguf_engine.encode(prompt)  # the context holds the prompt and all but the last answer token
    pieces = [gguf_engine._token_bytes(t) for t in gguf_engine.llm.input_ids[len(ids):gguf_engine.llm.n_tokens]]
    texts = [gguf_engine.generate(prompt, GREEDY.replace(max_new_tokens=k)).text for k in range(1, 13)]
    assert all(cut_answers(texts, pieces))  # the random model emits both: each case is met
