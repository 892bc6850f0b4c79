"""Prompt-lookup decoding in the transformers backend: drafts copied from the prompt, identical greedy tokens."""

import pytest

from asclepius_ui.engines import GenerationError, GenerationSettings, LoadOptions, load_engine

NOTE = ("DISCHARGE SUMMARY\nPatient: 70-year-old male with COPD and CHF.\nHospital Course:\n"
        + "\n".join(f"Day {i}: ceftriaxone and azithromycin given, oxygen weaned, walked in the hall."
                    for i in range(1, 7)) + "\nDischarge medications: furosemide, metoprolol, tiotropium.\n")
QUESTIONS = ["List the discharge medications.", "What was the diagnosis?"]


@pytest.fixture(scope="module")
def engine(tiny_bin_model):
    # no prefix reuse here: every request runs prompt lookup from the start
    return load_engine(LoadOptions(str(tiny_bin_model), precision="fp32", device="cpu", prefix_cache_entries=0))


class _ForwardLengths:
    """Records how many tokens each forward pass of the model processed (a real hook on the real model)."""

    def __init__(self, model):
        self.lengths: list[int] = []
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.lengths.append(int(ids.shape[1]))

    def close(self):
        self._handle.remove()


def _run(engine, question, lookup, stream=True):
    settings = GenerationSettings(max_new_tokens=16, prompt_lookup=lookup)
    prompt = engine.prompt(NOTE, question)
    if not stream:
        return engine.generate(prompt, settings)
    *_, last = engine.stream(prompt, settings, min_interval=0)
    return last


@pytest.mark.parametrize("stream", [True, False])
def test_identical_greedy_tokens_on_and_off(engine, stream):
    for q in QUESTIONS:
        off, on = _run(engine, q, 0, stream), _run(engine, q, 5, stream)
        assert on.text == off.text and on.new_tokens == off.new_tokens


def test_drafts_are_verified_in_one_pass(engine):
    """With lookup on, decoding forwards carry drafted tokens (more than one at a time); how many are accepted
    depends on the model copying the note, which a random model rarely does."""
    counts = {}
    for lookup in (0, 5):
        probe = _ForwardLengths(engine.model)
        try:
            r = _run(engine, QUESTIONS[0], lookup)
        finally:
            probe.close()
        decode = probe.lengths[1:]  # after the prompt's prefill
        counts[lookup] = (decode, r.new_tokens)
    plain, drafted = counts[0][0], counts[5][0]
    assert set(plain) <= {1}
    assert max(drafted) > 1 and len(drafted) <= len(plain)


def test_only_greedy_single_sequences_draft(engine):
    kw = engine._generate_kwargs(GenerationSettings(prompt_lookup=5))
    assert kw["prompt_lookup_num_tokens"] == 5
    assert "prompt_lookup_num_tokens" not in engine._generate_kwargs(GenerationSettings(prompt_lookup=0))
    for settings in (GenerationSettings(prompt_lookup=5, do_sample=True),
                     GenerationSettings(prompt_lookup=5, num_beams=2)):
        assert "prompt_lookup_num_tokens" not in engine._generate_kwargs(settings)
    assert "prompt_lookup_num_tokens" not in engine._generate_kwargs(GenerationSettings(prompt_lookup=5), batch=2)
    beams = engine.generate(engine.prompt(NOTE, "q"), GenerationSettings(max_new_tokens=4, num_beams=2,
                                                                         prompt_lookup=5))
    assert beams.new_tokens <= 4
    assert engine.capabilities.prompt_lookup and engine.capabilities.prefix_cache


def test_negative_draft_length_is_explained(engine):
    with pytest.raises(GenerationError, match="Prompt-lookup"):
        _run(engine, QUESTIONS[0], -1)
