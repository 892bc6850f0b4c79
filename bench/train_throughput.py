"""Pretraining throughput and model FLOPs utilisation through ``train.pretrain``'s code path.

    python bench/train_throughput.py --size 1b --steps 300            # one GPU, random ~1.1B LLaMA, bf16
    python bench/train_throughput.py --size tiny --steps 20            # CPU smoke run

Builds a randomly initialised LLaMA, packs random token blocks like ``train.data.build_pretraining_dataset``
and trains with ``Trainer`` + ``PackedCollator`` + ``PretrainTrainingArguments`` (``pretrain.train_and_save``).
Steps after ``--warmup`` are timed. MFU = 6 * N_params * tokens/s / peak FLOP/s (the attention-aware figure,
adding 12 * layers * hidden * seq per token, is printed too).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

from train.args import PretrainTrainingArguments
from train.data import PackedCollator
from train.pretrain import attention_backend, train_and_save

# dense bf16 peak TFLOP/s per device (no sparsity)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "RTX 4090": 165.0}

SIZES = {
    # TinyLlama-like: 22 layers, hidden 2048, GQA with 4 KV heads, ~1.1B parameters
    "1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
               num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048),
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=168, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512),
}


def default_peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (CUDA-synchronised)."""

    def __init__(self):
        self.times: list[float] = []
        self.t0 = 0.0

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kw):
        self._sync()
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self._sync()
        self.times.append(time.perf_counter() - self.t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=list(SIZES), default="1b")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 300 for 1b, 20 for tiny)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 10%% of steps, >= 2)")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default 8 for 1b, 8 for tiny)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 2048 / 128)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak; default by detected GPU")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing (recomputes forward)")
    p.add_argument("--attn", default="auto", help="auto (flash-attn if installed, else sdpa), sdpa, eager")
    p.add_argument("--json-out", help="also write the figures here")
    a = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    steps = a.steps or (300 if a.size == "1b" else 20)
    warmup = a.warmup if a.warmup is not None else max(2, steps // 10)
    batch = a.batch or 8
    seq = a.seq_len or (2048 if a.size == "1b" else 128)
    peak = a.peak_tflops or default_peak_tflops()

    cfg = LlamaConfig(**SIZES[a.size], bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    cfg._attn_implementation = attention_backend(a.attn)
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = LlamaForCausalLM(cfg)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())

    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(3, cfg.vocab_size, (steps * batch, seq), generator=g).tolist()
    dataset = datasets.Dataset.from_dict({"input_ids": blocks})

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        targs = PretrainTrainingArguments(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch, global_batch_size=0,
            bf16=cuda, use_cpu=not cuda, activation_checkpointing=a.checkpointing, save_strategy="no",
            logging_steps=max(1, steps // 10), report_to="none", disable_tqdm=True, learning_rate=2e-5,
            dataloader_num_workers=2 if cuda else 0, dataloader_pin_memory=cuda,
        )
        train_and_save(model, None, dataset, PackedCollator(), targs, callbacks=[timer], save=False)

    timed = timer.times[warmup:]
    tokens_per_s = batch * seq * len(timed) / sum(timed)
    flops_per_token = 6 * n_params
    attn_flops_per_token = 12 * cfg.num_hidden_layers * cfg.hidden_size * seq
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    result = {
        "device": device, "size": a.size, "params": n_params, "steps_timed": len(timed), "batch": batch,
        "seq_len": seq, "precision": "bf16 autocast" if cuda else "fp32", "attention": cfg._attn_implementation,
        "activation_checkpointing": a.checkpointing, "tokens_per_s": round(tokens_per_s, 1),
        "model_tflops": round(flops_per_token * tokens_per_s / 1e12, 3), "peak_tflops": peak,
        "mfu": round(flops_per_token * tokens_per_s / (peak * 1e12), 4) if peak else None,
        "mfu_with_attention": round((flops_per_token + attn_flops_per_token) * tokens_per_s / (peak * 1e12), 4)
        if peak else None,
        "command": "python bench/train_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(json.dumps(result, indent=2))
    mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "n/a (no --peak-tflops for this device)"
    print(f"{device}: {n_params / 1e6:,.1f}M params, {tokens_per_s:,.0f} tokens/s, MFU {mfu}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
