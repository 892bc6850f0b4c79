"""Prefix reuse in the transformers backend: follow-up questions on one note reuse the note's KV cache and give
exactly the tokens they give without it."""

import threading

import pytest

from asclepius_ui.engines import GenerationSettings, LoadOptions, load_engine
from asclepius_ui.prompts import prompt_parts

NOTE = ("DISCHARGE SUMMARY\nPatient: 70-year-old male with COPD and CHF.\nHospital Course:\n"
        + "\n".join(f"Day {i}: ceftriaxone and azithromycin given, oxygen weaned, walked in the hall."
                    for i in range(1, 9)) + "\nDischarge medications: furosemide, metoprolol, tiotropium.\n")
QUESTIONS = ["What medications was the patient discharged on?", "Summarize the hospital course.",
             "What was the diagnosis?"]
SETTINGS = GenerationSettings(max_new_tokens=16)


def _engine(model, entries: int = 4, **options):
    return load_engine(LoadOptions(str(model), precision="fp32", device="cpu", prefix_cache_entries=entries,
                                   **options))


@pytest.fixture(scope="module")
def cached(tiny_bin_model):
    return _engine(tiny_bin_model)


@pytest.fixture(scope="module")
def uncached(tiny_bin_model):
    return _engine(tiny_bin_model, entries=0)


def _answer(engine, question, note=NOTE, **kw):
    *_, last = engine.stream(engine.make_prompt(note, question), GenerationSettings(max_new_tokens=16, **kw),
                             min_interval=0)
    return last


def test_note_prefix_is_the_prompt_up_to_the_question():
    prompt, prefix = prompt_parts(NOTE, "Why?")
    assert prefix is not None and prompt.startswith(prefix)
    assert prefix.endswith("[Instruction Begin]\n") and NOTE.strip() in prefix and "Why?" not in prefix
    assert prompt_parts(NOTE, "Why?", "alpaca")[1] is None  # question first: nothing to share


def test_prefix_ids_are_a_true_prefix_of_the_prompt(cached):
    prompt = cached.make_prompt(NOTE, QUESTIONS[0])
    n = cached._prefix_length(prompt)
    assert n > 50
    assert list(prompt.ids[:n]) == cached.encode(prompt.prefix)[:n]


def test_follow_ups_reuse_the_note_and_give_identical_tokens(cached, uncached):
    cached.prefix_cache.clear()
    hits = cached.prefix_cache.hits
    for q in QUESTIONS:
        with_cache, without = _answer(cached, q), _answer(uncached, q)
        assert with_cache.text == without.text and with_cache.new_tokens == without.new_tokens
    assert cached.prefix_cache.hits - hits == len(QUESTIONS) - 1  # the first question filled it
    assert len(cached.prefix_cache) == 1 and cached.prefix_cache.reused_tokens > 0
    assert uncached.prefix_cache.hits == 0 and len(uncached.prefix_cache) == 0
    # the same question again (regenerate) and one-shot generate also hit and agree
    again = cached.generate(cached.make_prompt(NOTE, QUESTIONS[0]), SETTINGS)
    assert again.text == uncached.generate(uncached.make_prompt(NOTE, QUESTIONS[0]), SETTINGS).text


def test_reuse_with_prompt_lookup_and_sampling_paths(cached, uncached):
    q = QUESTIONS[1]
    cached.prefix_cache.clear()
    plain = _answer(uncached, q).text
    assert _answer(cached, q, prompt_lookup=4).text == plain  # a miss drafts and fills the cache
    hits = cached.prefix_cache.hits
    assert _answer(cached, q, prompt_lookup=4).text == plain  # a hit reuses the note (and decodes without drafts)
    assert cached.prefix_cache.hits == hits + 1
    hits = cached.prefix_cache.hits
    _answer(cached, q, do_sample=True, temperature=0.8, top_p=0.9)
    beams = cached.generate(cached.prompt(NOTE, q), GenerationSettings(max_new_tokens=6, num_beams=2))
    assert cached.prefix_cache.hits == hits + 1  # sampling reuses the note; beam search starts from scratch
    assert beams.new_tokens <= 6


def test_a_different_note_misses(cached):
    cached.prefix_cache.clear()
    _answer(cached, QUESTIONS[0])
    hits, misses = cached.prefix_cache.hits, cached.prefix_cache.misses
    _answer(cached, QUESTIONS[0], note=NOTE.replace("70-year-old", "64-year-old"))
    assert cached.prefix_cache.hits == hits and cached.prefix_cache.misses == misses + 1


def test_cache_is_bounded(tiny_bin_model):
    e = _engine(tiny_bin_model, entries=2)
    for i in range(3):
        _answer(e, "Why?", note=f"Note number {i}.\n" + NOTE)
    assert len(e.prefix_cache) == 2
    first_note_hits = e.prefix_cache.hits
    _answer(e, "Why?", note="Note number 0.\n" + NOTE)  # the oldest was evicted
    assert e.prefix_cache.hits == first_note_hits
    tiny = _engine(tiny_bin_model, prefix_cache_bytes=1024)
    _answer(tiny, "Why?")
    assert len(tiny.prefix_cache) == 0 and tiny.prefix_cache.nbytes == 0


def test_concurrent_follow_ups_on_one_engine(tiny_bin_model, uncached):
    e = _engine(tiny_bin_model)
    expected = {q: _answer(uncached, q).text for q in QUESTIONS}
    got: dict = {}

    def run(q):
        got[q] = _answer(e, q).text

    threads = [threading.Thread(target=run, args=(q,)) for q in QUESTIONS * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got == expected
    assert e.prefix_cache.hits + e.prefix_cache.misses == len(threads)
