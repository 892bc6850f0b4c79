"""``python -m asclepius_ui.convert``: llama.cpp's own converter and quantiser on the tiny test LLaMA."""

from __future__ import annotations

import pytest

from asclepius_ui import convert

pytest.importorskip("llama_cpp")


def test_f16_from_the_asclepius_layout_is_a_loadable_gguf(tiny_gguf, tiny_bin_model):
    """The session fixture ran our command on sharded fp32 .bin + slow tokenizer.model (no "architectures")."""
    import llama_cpp

    assert tiny_gguf.stat().st_size > 0
    meta = llama_cpp.Llama(str(tiny_gguf), vocab_only=True, verbose=False).metadata
    assert meta["general.architecture"] == "llama" and meta["llama.context_length"] == "1024"
    assert meta["tokenizer.ggml.bos_token_id"] == "1" and meta["tokenizer.ggml.eos_token_id"] == "2"
    assert not (tiny_bin_model / "config.json").read_text().count("architectures")  # the folder was not touched


def test_q8_0_from_a_safetensors_folder_with_verify(tiny_safetensors_model, tmp_path, capsys):
    out = tmp_path / "tiny-q8_0.gguf"
    result = convert.convert(convert.ConvertOptions(model=str(tiny_safetensors_model), out=out, quant="q8_0",
                                                    verify=True, threads=1, progress=False))
    assert out.is_file() and result.bytes == out.stat().st_size
    # Every width of the test model is a multiple of 32 (as in real models), so every tensor is q8_0's 32-value blocks
    assert result.total_tensors > 0 and result.fallback_tensors == 0
    assert len(result.agreements) == len(convert.VERIFY_QUESTIONS)
    assert max(a.prefix for a in result.agreements) == convert.VERIFY_TOKENS, [a.prefix for a in result.agreements]
    err = capsys.readouterr().err
    assert "[5/5] verifying" in err and "tokens agree" in err
    # Drafting on a quantised GGUF is allowed but says that greedy answers may differ (measured on a 515M model).
    from asclepius_ui.engines import LoadOptions, load_engine

    drafting = load_engine(LoadOptions(str(out), threads=1, draft_prompt_lookup=5))
    try:
        assert any("q8_0 GGUF" in n and "may differ" in n for n in drafting.notices), drafting.notices
    finally:
        drafting.close()


def test_f16_agrees_with_transformers_on_greedy_tokens(tiny_gguf, tiny_bin_model):
    """--verify's comparison on the f16 GGUF: the first 20 of 32 greedy tokens agree on every prompt."""
    agreements = convert.verify(tiny_bin_model, tiny_gguf, threads=1)
    assert all(a.prefix >= 20 for a in agreements), [a.prefix for a in agreements]


def test_bad_inputs_are_clear_errors(tmp_path, capsys, tiny_bin_model):
    assert convert.main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x.gguf")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert convert.main(["--model", str(tmp_path / "empty"), "--out", str(tmp_path / "x.gguf")]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert convert.main(["--model", str(tiny_bin_model), "--out", str(tmp_path / "x.bin")]) == 2
    assert "must end in .gguf" in capsys.readouterr().err
    assert convert.main(["--model", "starmpcc/Asclepius-7B", "--out", str(tmp_path / "x.gguf")]) == 2
    assert "offline" in capsys.readouterr().err  # the tests run with HF_HUB_OFFLINE=1
    assert convert.main(["--model", str(tiny_bin_model), "--out", str(tmp_path / "x.gguf"),
                         "--llama-cpp", str(tmp_path)]) == 2
    assert "no convert_hf_to_gguf.py" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.gguf"))
