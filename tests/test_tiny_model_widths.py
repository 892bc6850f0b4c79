"""The tiny test models quantise to 4 bits on every x86 CPU, including those where bitsandbytes packs weights
for its AVX512-BF16 kernels (which needs each layer's output width divisible by 32, as real models' are).

The packing is run here directly on every 4-bit layer, so the check holds whatever CPU runs the suite.
"""

from __future__ import annotations

import copy

import pytest

from asclepius_ui.engines import LoadOptions, load_engine
from train.tiny_model import BNB_BLOCK, tiny_llama_config


@pytest.mark.parametrize("hidden", [32, 64, 96, 128])
def test_tiny_widths_are_those_real_models_have(hidden):
    c = tiny_llama_config(400, hidden=hidden)
    assert c.hidden_size % BNB_BLOCK == 0 and c.intermediate_size % BNB_BLOCK == 0
    assert c.intermediate_size >= hidden * 8 // 3


def test_every_4bit_layer_packs_for_the_cpu_kernels(tiny_bin_model):
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    e = load_engine(LoadOptions(str(tiny_bin_model), precision="4bit", device="cpu"))
    layers = [m for m in e.model.modules() if type(m).__name__ == "Linear4bit"]
    assert layers
    for m in layers:
        packed, _ = _convert_weight_packed_for_cpu(m.weight.data.clone(), copy.deepcopy(m.weight.quant_state))
        assert packed.numel() > 0
