"""Tiny LLaMA-architecture models and the checkpoint layouts the published models use."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

BNB_BLOCK = 32  # bitsandbytes' CPU 4-bit packing needs out_features divisible by this


def tiny_llama_config(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4,
                      context: int = 512) -> LlamaConfig:
    """A small LLaMA config with LLaMA-1 token ids (bos=1, eos=2, no pad token).

    Layer widths are multiples of 32, as in real models (LLaMA's MLP is 8/3 of the width rounded up to a multiple
    of 256): bitsandbytes' CPU 4-bit kernels (used on CPUs with AVX512-BF16) pack weights in blocks of 32 rows.
    """
    if hidden % BNB_BLOCK:
        raise ValueError(f"hidden must be a multiple of {BNB_BLOCK} (got {hidden})")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=-(-hidden * 8 // 3 // BNB_BLOCK) * BNB_BLOCK,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
        tie_word_embeddings=False,
    )


def init_model(config: LlamaConfig, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised model in fp32."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()


def save_sharded_bin(model: torch.nn.Module, out_dir: str | Path, shards: int = 2) -> Path:
    """Save fp32 weights as ``pytorch_model-0000N-of-0000M.bin`` shards with an index, plus the config.

    That is the layout of Asclepius-7B/13B on the hub (no safetensors).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    names = list(state)
    per = -(-len(names) // shards)
    weight_map, total = {}, 0
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        fname = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({k: state[k] for k in part}, out / fname)
        for k in part:
            weight_map[k] = fname
            total += state[k].numel() * state[k].element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
    model.config.dtype = "float32"
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    return out
