"""Quantisation configs shared by the app's engines and ``train.finetune`` (QLoRA): one definition of each."""

from __future__ import annotations

import torch


def nf4_config(compute_dtype: torch.dtype = torch.bfloat16):
    """4-bit NF4 with double quantisation (the QLoRA recipe), computing in ``compute_dtype``."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def int8_config():
    """8-bit LLM.int8() weights."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_8bit=True)
