"""Loading real tiny checkpoints in every precision, BOS/EOS handling, streaming, stop and the context budget."""

import copy
import subprocess
import sys
import threading

import pytest
import torch

from asclepius_ui.engines import (
    GenerationError,
    GenerationSettings,
    LoadOptions,
    ModelLoadError,
    answer,
    load_engine,
)
from asclepius_ui.engines.base import unfinished_character
from asclepius_ui.engines.transformers import _generation_error
from asclepius_ui.tokenization import budget_for, truncate_note

from .cut_answers import cut_answers, decoded

NOTE = "DISCHARGE SUMMARY\nPatient: 70-year-old male\nHospital Course:\nTreated for CAP with ceftriaxone.\n"


def direct(engine, prompt: str, **kwargs) -> tuple[str, int]:
    """The answer straight from transformers' generate (no engine code), stripped at EOS, and its token count."""
    ids = torch.tensor([engine.encode(prompt)], device=engine.model.device)
    with torch.inference_mode():
        out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    eos_token_id=engine.eos_token_ids, pad_token_id=engine.eos_token_ids[0], **kwargs)
    new = out[0, ids.shape[1]:].tolist()
    eos = [i for i, t in enumerate(new) if t in engine.eos_token_ids]
    new = new[:eos[0]] if eos else new
    return decoded(engine, new), len(new)



def test_published_layout_has_no_fast_tokenizer(tiny_bin_model):
    names = {p.name for p in tiny_bin_model.iterdir()}
    assert "tokenizer.json" not in names and "tokenizer.model" in names
    assert {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
            "pytorch_model.bin.index.json"} <= names


def test_load_sharded_bin_fp32(tiny_engine):
    assert tiny_engine.precision == "fp32"
    assert all(p.dtype == torch.float32 for p in tiny_engine.model.parameters())
    assert tiny_engine.context_length == 1024  # unknown model: from the config
    assert tiny_engine.notices and "not a known Asclepius variant" in tiny_engine.notices[0]
    assert tiny_engine.revision.startswith("local-")


def test_fp32_checkpoint_loads_straight_into_bf16(tiny_bin_model, tiny_engine):
    e = load_engine(LoadOptions(str(tiny_bin_model), precision="bf16", device="cpu"))
    assert all(p.dtype == torch.bfloat16 for p in e.model.parameters())
    ref = tiny_engine.model.model.embed_tokens.weight
    assert torch.allclose(e.model.model.embed_tokens.weight.float(), ref, atol=1e-2)
    r = e.generate(e.prompt(NOTE, "What was given?"), GenerationSettings(max_new_tokens=5))
    assert (r.text, r.new_tokens) == direct(e, e.prompt(NOTE, "What was given?"), max_new_tokens=5, do_sample=False)


def test_load_safetensors(tiny_safetensors_model):
    assert any(p.suffix == ".safetensors" for p in tiny_safetensors_model.iterdir())
    e = load_engine(LoadOptions(str(tiny_safetensors_model), precision="fp32", device="cpu"))
    r = e.generate(e.prompt(NOTE, "q"), GenerationSettings(max_new_tokens=4))
    assert (r.text, r.new_tokens) == direct(e, e.prompt(NOTE, "q"), max_new_tokens=4, do_sample=False)


@pytest.mark.parametrize("precision,layer", [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_bitsandbytes_loading_generates(tiny_bin_model, precision, layer):
    e = load_engine(LoadOptions(str(tiny_bin_model), precision=precision, device="cpu"))
    kinds = {type(m).__name__ for m in e.model.modules()}
    assert layer in kinds
    assert "bitsandbytes" in e.precision_label
    r = e.generate(e.prompt(NOTE, "What was given?"), GenerationSettings(max_new_tokens=6))
    assert (r.text, r.new_tokens) == direct(e, e.prompt(NOTE, "What was given?"), max_new_tokens=6, do_sample=False)
    assert r.seconds > 0


def test_bos_exactly_once(tiny_engine):
    bos = tiny_engine.tokenizer.bos_token_id
    ids = tiny_engine.encode(tiny_engine.prompt(NOTE, "q"))
    assert ids[0] == bos and ids.count(bos) == 1
    doubled = tiny_engine.encode("<s>" + tiny_engine.prompt(NOTE, "q"))
    assert doubled[0] == bos and doubled[1] != bos


def test_literal_control_tokens_in_a_note_stay_text(tiny_engine):
    """A note quoting ``<s>``/``</s>`` (or a prompt typed with a leading ``<s>``) must not start or end a sequence."""
    tok = tiny_engine.tokenizer
    bos, eos = tok.bos_token_id, tok.eos_token_id
    note = "Pt wrote <s> and </s> on the form.\n" + NOTE
    prompt = tiny_engine.prompt(note, "What did the patient write?")
    ids = tiny_engine.encode(prompt)
    assert ids[0] == bos and ids.count(bos) == 1 and eos not in ids
    assert "<s> and </s>" in tok.decode(ids, skip_special_tokens=True)
    as_text = tok("<s>" + NOTE, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert tiny_engine.encode("<s>" + NOTE) == [bos] + as_text and as_text[0] != bos
    spans = tiny_engine.token_spans("a </s> b")
    assert all("a </s> b"[i:j] != "</s>" for i, j in spans)  # no single control token inside the note
    assert tiny_engine.count_tokens(prompt) == len(ids)
    assert tiny_engine.generate(prompt, GenerationSettings(max_new_tokens=4)).prompt_tokens == len(ids)


def test_generation_stops_at_eos_and_strips_it(tiny_engine):
    prompt = tiny_engine.prompt(NOTE, "What was given?")
    first = tiny_engine.model.generate(torch.tensor([tiny_engine.encode(prompt)]), max_new_tokens=1,
                                       do_sample=False)[0, -1].item()
    config = tiny_engine.model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = first  # the token the model emits first now counts as its EOS
    try:
        r = tiny_engine.generate(prompt, GenerationSettings(max_new_tokens=20))
    finally:
        config.eos_token_id = saved
    assert r.new_tokens == 0 and r.text == ""


def test_default_is_the_greedy_preset_and_paper_is_the_authors_setting():
    s = GenerationSettings()
    assert s.max_new_tokens == 400 and not s.do_sample and s.num_beams == 1 and s.preset == "greedy" and s.streams
    paper = GenerationSettings.from_preset("paper")
    assert paper.to_kwargs() == dict(max_new_tokens=400, num_beams=5, repetition_penalty=1.0, do_sample=True,
                                     temperature=1.0, top_p=1.0)
    assert paper.preset == "paper" and not paper.streams
    assert GenerationSettings.from_preset("paper", max_new_tokens=100).preset == "paper"
    assert GenerationSettings.from_preset("paper", num_beams=2).preset == "custom"
    with pytest.raises(GenerationError, match="Unknown decoding preset"):
        GenerationSettings.from_preset("fast")


def test_stream_yields_growing_text(tiny_engine):
    updates = list(tiny_engine.stream(tiny_engine.prompt(NOTE, "Summarize."), GenerationSettings(max_new_tokens=40),
                                      min_interval=0))
    assert updates[-1].done and all(not u.done for u in updates[:-1])
    assert len(updates) >= 3
    counts = [u.new_tokens for u in updates]
    assert counts == sorted(counts) and counts[-1] >= counts[0]
    texts = [u.text for u in updates[:-1]]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    assert all(updates[-1].text.startswith(t) for t in texts)
    final = tiny_engine.generate(tiny_engine.prompt(NOTE, "Summarize."), GenerationSettings(max_new_tokens=40))
    assert final.text == updates[-1].text  # streaming and one-shot give the same answer


def test_stop_ends_this_request_only(tiny_engine):
    prompt = tiny_engine.prompt(NOTE, "Summarize.")
    settings = GenerationSettings(max_new_tokens=200, repetition_penalty=1.0)
    stop_me, other = threading.Event(), threading.Event()
    results = {}

    def run(name, event):
        last = None
        for last in tiny_engine.stream(prompt, settings, event, min_interval=0):
            if name == "stopped" and last.new_tokens >= 3:
                event.set()
        results[name] = last

    threads = [threading.Thread(target=run, args=("stopped", stop_me)), threading.Thread(target=run, args=("other",
                                                                                                           other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["stopped"].stopped and results["stopped"].new_tokens < 50
    alone = tiny_engine.generate(prompt, settings)  # the other request ran exactly as if it had been alone
    assert not results["other"].stopped and not alone.stopped
    assert (results["other"].text, results["other"].new_tokens) == (alone.text, alone.new_tokens)


def test_beam_search_and_sampling_run(tiny_engine):
    p = tiny_engine.prompt(NOTE, "q")
    r = tiny_engine.generate(p, GenerationSettings(max_new_tokens=5, num_beams=2))
    assert (r.text, r.new_tokens) == direct(tiny_engine, p, max_new_tokens=5, num_beams=2, do_sample=False)
    torch.manual_seed(0)
    r = tiny_engine.generate(p, GenerationSettings(max_new_tokens=5, do_sample=True, temperature=0.8, top_p=0.9))
    torch.manual_seed(0)
    assert (r.text, r.new_tokens) == direct(tiny_engine, p, max_new_tokens=5, do_sample=True, temperature=0.8,
                                            top_p=0.9)


def test_bad_settings_are_explained(tiny_engine):
    with pytest.raises(GenerationError, match="at least 1"):
        tiny_engine.generate(tiny_engine.prompt(NOTE, "q"), GenerationSettings(max_new_tokens=0))


def test_long_note_is_refused_then_truncated_explicitly(tiny_engine):
    long_note = NOTE + "\n".join(f"Day {i}: vitals stable, walked in the hall, ate well." for i in range(200))
    settings = GenerationSettings(max_new_tokens=100)
    b = budget_for(tiny_engine.tokenizer, long_note, "Summarize.", "asclepius", 100, tiny_engine.context_length)
    assert not b.fits and b.overflow > 0
    with pytest.raises(GenerationError, match="over the model's context"):
        tiny_engine.generate(tiny_engine.prompt(long_note, "Summarize."), settings)
    cut = truncate_note(tiny_engine.tokenizer, long_note, "Summarize.", "asclepius", 100, tiny_engine.context_length)
    assert cut.kept + cut.cut == long_note and cut.cut and cut.cut_tokens > 0
    assert budget_for(tiny_engine.tokenizer, cut.kept, "Summarize.", "asclepius", 100,
                      tiny_engine.context_length).fits
    tail = truncate_note(tiny_engine.tokenizer, long_note, "Summarize.", "asclepius", 100,
                         tiny_engine.context_length, keep="end")
    assert tail.cut + tail.kept == long_note and long_note.endswith(tail.kept)
    assert tiny_engine.generate(tiny_engine.prompt(cut.kept, "Summarize."), settings).seconds > 0


def test_notebook_api(tiny_bin_model):
    import asclepius_ui

    e = asclepius_ui.load_engine(asclepius_ui.LoadOptions(str(tiny_bin_model), device="cpu"))
    r = answer(e, NOTE, "What was given?", asclepius_ui.GenerationSettings(max_new_tokens=3))
    assert (r.text, r.new_tokens) == direct(e, e.prompt(NOTE, "What was given?"), max_new_tokens=3, do_sample=False)
    with pytest.raises(GenerationError, match="note is empty"):
        answer(e, "  ", "q")


@pytest.mark.parametrize("model,message", [
    ("/no/such/folder", "not found"),
    ("starmpcc/Asclepius-Llama3-8B", "offline"),
])
def test_load_errors_are_clear(model, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=message):
        load_engine(LoadOptions(model, device="cpu"))


def test_folder_without_config_or_weights(tmp_path, tiny_bin_model):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_engine(LoadOptions(str(tmp_path), device="cpu"))
    (tmp_path / "config.json").write_text((tiny_bin_model / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="no weights"):
        load_engine(LoadOptions(str(tmp_path), device="cpu"))


def test_cuda_without_gpu_is_explained(tiny_bin_model):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_engine(LoadOptions(str(tiny_bin_model), device="cuda"))


def test_unusable_bitsandbytes_is_explained(tiny_bin_model):
    code = ("import sys; sys.modules['bitsandbytes'] = None\n"
            "from asclepius_ui.engines import LoadOptions, ModelLoadError, load_engine\n"
            f"try:\n    load_engine(LoadOptions({str(tiny_bin_model)!r}, precision='8bit', device='cpu'))\n"
            "except ModelLoadError as e:\n    print('MSG', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "MSG" in out.stdout and "bitsandbytes" in out.stdout and "bf16/fp32" in out.stdout


def test_out_of_memory_message():
    err = _generation_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "Out of memory" in str(err) and "8-bit" in str(err)


def test_4bit_layers_whose_width_does_not_pack_keep_the_plain_cpu_path(tmp_path, tokenizer_dir):
    """A real model with an MLP width bitsandbytes cannot pack for AVX512-BF16 CPUs (168 rows, not a multiple of
    32) loads in 4-bit and answers on any x86; every layer left on the packing path packs without its assert."""
    import shutil

    from bitsandbytes.nn import Linear4bit
    from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu

    from asclepius_ui.engines.transformers import _plain_cpu_4bit_where_packing_fails, cpu_4bit_packs
    from train.tiny_model import init_model, tiny_llama_config

    config = tiny_llama_config(400, context=512)
    config.intermediate_size = 168  # an odd width, as some fine-tuned checkpoints have
    init_model(config).save_pretrained(tmp_path)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    e = load_engine(LoadOptions(str(tmp_path), precision="4bit", device="cpu"))
    layers = [m for m in e.model.modules() if isinstance(m, Linear4bit)]
    for m in layers:  # as on a CPU with AVX512-BF16, whatever this one has
        m.support_avx512bf16_for_cpu = True
    odd = [m for m in layers if not cpu_4bit_packs(m)]
    assert odd and _plain_cpu_4bit_where_packing_fails(e.model) == len(odd)
    for m in layers:
        if m.support_avx512bf16_for_cpu:
            _convert_weight_packed_for_cpu(m.weight.data.clone(), copy.deepcopy(m.weight.quant_state))
        else:
            assert m.out_features == 168 or m.in_features == 168
    for m in layers:
        m.support_avx512bf16_for_cpu = False  # this CPU's own path for the answer below
    r = e.generate(e.prompt(NOTE, "What was given?"), GenerationSettings(max_new_tokens=4))
    assert (r.text, r.new_tokens) == direct(e, e.prompt(NOTE, "What was given?"), max_new_tokens=4, do_sample=False)




def test_unfinished_character_counts_only_a_valid_start():
    assert [unfinished_character(b) for b in (b"caf\xc3", b"\xe2\x82", b"\xe2\x82\xac", b"ru\xbf", b"\xff", b"")] == [
        1, 2, 0, 0, 0, 0]



def test_an_answer_cut_in_the_middle_of_a_character_leaves_it_out(tiny_engine):
    """Cut by the token limit (or Stop) just after the first byte piece of a character (``<0xE1>``), the finished
    answer ends before that character, as the streamed updates did, instead of with a "\ufffd"."""
    prompt = tiny_engine.prompt(NOTE, "Summarize.")
    ids = tiny_engine.encode(prompt)
    out = tiny_engine.model.generate(input_ids=torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    pieces = [tiny_engine.tokenizer.convert_ids_to_tokens(i) for i in out[0, len(ids):].tolist()]
    pieces = [bytes([int(p[3:5], 16)]) if p.startswith("<0x") else p.encode() for p in pieces]
    texts = [tiny_engine.generate(prompt, GenerationSettings(max_new_tokens=k)).text for k in range(1, 13)]
    assert all(cut_answers(texts, pieces))  # the random model emits both: each case is met
