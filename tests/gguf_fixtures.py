"""GGUF fixtures: the tiny test LLaMA converted once per session by our own command (``asclepius_ui.convert``).

tests/conftest.py imports them, so every test module can ask for them; tests that need llama.cpp skip without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _need_llama_cpp() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -r requirements.txt)")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, tiny_bin_model) -> Path:
    """The Asclepius-layout tiny model (sharded fp32 .bin + slow tokenizer.model) as an f16 GGUF."""
    _need_llama_cpp()
    from asclepius_ui.convert import main

    out = tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf"
    assert main(["--model", str(tiny_bin_model), "--out", str(out), "--quant", "f16", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def gguf_engine(tiny_gguf):
    """The tiny f16 GGUF loaded through the backend registry (llama.cpp picked for the .gguf file)."""
    from asclepius_ui.engines import LoadOptions, load_engine

    engine = load_engine(LoadOptions(str(tiny_gguf), threads=1))
    yield engine
    engine.close()
