"""Bytes per parameter of our GGUF conversions, and the memory each Asclepius variant needs on a laptop.

    python bench/gguf_sizes.py            # a random LLaMA with 7B-like proportions, ~200M parameters

Builds a random LLaMA in the Asclepius-7B layout (sharded fp32 .bin, sentencepiece tokenizer) whose row widths
split into every quantisation's blocks (multiples of 256), converts it with ``python -m asclepius_ui.convert``'s
code to f16 and quantises that to q8_0 and q4_k_m, and measures bytes per parameter from the file sizes. The
memory of each registry variant is then its parameter count (from its architecture) times those bytes, plus its
f16 KV cache for the whole registry context, plus llama.cpp's compute buffers (an estimate: ``--overhead-mib``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arch:
    """The shapes that decide a LLaMA-family model's size."""

    layers: int
    hidden: int
    ffn: int
    kv_heads: int
    vocab: int
    head_dim: int = 128

    @property
    def params(self) -> int:
        kv = self.kv_heads * self.head_dim
        per_layer = 2 * self.hidden * self.hidden + 2 * self.hidden * kv + 3 * self.hidden * self.ffn + 2 * self.hidden
        return 2 * self.vocab * self.hidden + self.layers * per_layer + self.hidden

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V in f16 for every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * 2


# The registry's variants by their base model's published architecture (config.json of each base).
VARIANTS = {
    "Asclepius-7B": (Arch(32, 4096, 11008, 32, 32000), 2048),
    "Asclepius-13B": (Arch(40, 5120, 13824, 40, 32000), 2048),
    "Asclepius-Llama2-7B": (Arch(32, 4096, 11008, 32, 32000), 4096),
    "Asclepius-Llama2-13B": (Arch(40, 5120, 13824, 40, 32000), 4096),
    "Asclepius-Llama3-8B": (Arch(32, 4096, 14336, 8, 128256), 8192),
    "Asclepius-Mistral-7B-v0.3": (Arch(32, 4096, 14336, 8, 32768), 8192),
}


def build(out: Path, layers: int, hidden: int, ffn: int, vocab: int) -> int:
    """A random LLaMA (fp32, sharded .bin) with a sentencepiece tokenizer; returns its parameter count."""
    from transformers import LlamaConfig

    from train.notes import make_notes
    from train.tiny_model import init_model, save_sharded_bin
    from train.tokenizer import train_sentencepiece

    train_sentencepiece([n.text for n in make_notes(100)], out, vocab_size=400)
    heads = hidden // 128
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = init_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    save_sharded_bin(model, out, shards=4)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=2816, help="11 x 256, LLaMA's 2.69 x hidden")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--overhead-mib", type=float, default=300.0,
                   help="llama.cpp compute buffers and runtime, an estimate added to every RAM figure")
    args = p.parse_args(argv)

    from asclepius_ui.convert import ConvertOptions, convert, quantize

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        n = build(folder, args.layers, args.hidden, args.ffn, args.vocab)
        print(f"random LLaMA: {n / 1e6:.1f}M parameters ({args.layers} layers, hidden {args.hidden}, ffn {args.ffn}, "
              f"vocab {args.vocab})")
        f16 = Path(tmp) / "m-f16.gguf"
        convert(ConvertOptions(model=str(folder), out=f16, quant="f16"), say=lambda s: None)
        sizes = {"f16": f16.stat().st_size}
        for q in ("q8_0", "q4_k_m"):
            dst = Path(tmp) / f"m-{q}.gguf"
            fallback, _ = quantize(f16, dst, q, progress=False)
            assert fallback == 0, f"{fallback} tensors fell back: pick widths divisible by 256"
            sizes[q] = dst.stat().st_size
    per_param = {q: b / n for q, b in sizes.items()}
    print("bytes per parameter: " + ", ".join(f"{q} {v:.4f}" for q, v in per_param.items()))
    print()
    print("| variant | parameters | context | KV cache (f16, full context) | " +
          " | ".join(f"{q} file / RAM" for q in per_param) + " |")
    print("|---|---|---|---|" + "---|" * len(per_param))
    for name, (arch, ctx) in VARIANTS.items():
        kv = arch.kv_bytes_per_token * ctx
        cells = [f"{arch.params * v / 2**30:.1f} / {(arch.params * v + kv) / 2**30 + args.overhead_mib / 1024:.1f} GiB"
                 for v in per_param.values()]
        print(f"| {name} | {arch.params / 1e9:.2f} B | {ctx} | {kv / 2**30:.2f} GiB | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
