"""Streaming vs bare ``model.generate``: tokens/s, time to first token and peak memory per precision.

    python bench/generation.py                      # a random ~40M LLaMA built here, fp32/bf16/8-bit/4-bit
    python bench/generation.py --model DIR --precisions bf16 8bit --new-tokens 200

Each precision runs in its own process so peak memory is its own. Within a process the two paths run
alternately ``--rounds`` times on the same prompt, each making exactly ``--new-tokens`` tokens; the best
rate of each path is compared (the median ratio is printed too, as a check on noise).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NOTE = Path(__file__).resolve().parent.parent / "assets" / "notes" / "cardiology_chf.txt"


def build_model(out: Path, hidden: int, layers: int) -> Path:
    """A random LLaMA with a sentencepiece tokenizer trained on synthetic notes."""
    from transformers import AutoTokenizer

    from train.notes import make_notes
    from train.tiny_model import init_model, save_sharded_bin, tiny_llama_config
    from train.tokenizer import train_sentencepiece

    train_sentencepiece([n.text for n in make_notes(300)], out, vocab_size=2000)
    vocab = len(AutoTokenizer.from_pretrained(out))
    cfg = tiny_llama_config(vocab, hidden=hidden, layers=layers, heads=max(1, hidden // 64), context=2048)
    save_sharded_bin(init_model(cfg), out, shards=2)
    return out


def measure(model: str, precision: str, new_tokens: int, rounds: int) -> dict:
    import torch

    from asclepius_ui.engine import GenerationSettings, LoadOptions, load_engine

    engine = load_engine(LoadOptions(model, precision=precision))
    settings = GenerationSettings(max_new_tokens=new_tokens)
    prompt = engine.prompt(NOTE.read_text(), "Summarize the hospital course.")
    ids = torch.tensor([engine.encode(prompt)], device=engine.model.device)
    kwargs = engine._generate_kwargs(settings)
    kwargs["min_new_tokens"] = new_tokens  # both paths make exactly the same number of tokens

    def bare() -> tuple[float, int]:
        t = time.perf_counter()
        with torch.inference_mode():
            out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        return time.perf_counter() - t, out.shape[1] - ids.shape[1]

    def streamed() -> tuple[float, int, float]:
        engine.model.generation_config.min_new_tokens = new_tokens
        t = time.perf_counter()
        first = None
        for u in engine.stream(prompt, settings):  # the page's path: 50 ms updates
            if first is None and u.new_tokens:
                first = time.perf_counter() - t
        engine.model.generation_config.min_new_tokens = None
        return time.perf_counter() - t, u.new_tokens, first

    bare()  # warm-up
    b_rates, s_rates, ttfts, counts = [], [], [], set()
    for i in range(rounds):
        for path in ((bare, streamed) if i % 2 == 0 else (streamed, bare)):  # alternate to cancel drift
            secs, n, *first = path()
            (s_rates if first else b_rates).append(n / secs)
            counts.add(n)
            ttfts.extend(first)
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
        where = "GPU"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        where = "RSS"
    return dict(precision=engine.precision_label, bare_tok_s=max(b_rates), stream_tok_s=max(s_rates),
                bare_median=statistics.median(b_rates), stream_median=statistics.median(s_rates), tokens=sorted(counts),
                ttft_s=statistics.median(ttfts), peak_mib=peak, mem=where)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder or hub id (default: build a random LLaMA)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "8bit", "4bit"])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.child, args.new_tokens, args.rounds)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_model(Path(tmp) / "bench-model", args.hidden, args.layers))
        print(f"model: {model if args.model else f'random LLaMA hidden={args.hidden} layers={args.layers}'}; "
              f"{args.new_tokens} new tokens, best of {args.rounds} rounds")
        print(f"{'precision':<26}{'bare tok/s':>11}{'stream tok/s':>13}{'ratio':>7}{'median':>8}{'TTFT s':>8}"
              f"{'peak MiB':>10}")
        for precision in args.precisions:
            out = subprocess.run([sys.executable, __file__, "--model", model, "--child", precision, "--new-tokens",
                                  str(args.new_tokens), "--rounds", str(args.rounds)], capture_output=True, text=True)
            if out.returncode:
                print(f"{precision:<26} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = r["stream_tok_s"] / r["bare_tok_s"]
            median = r["stream_median"] / r["bare_median"]
            print(f"{r['precision']:<26}{r['bare_tok_s']:>11.1f}{r['stream_tok_s']:>13.1f}{ratio:>7.3f}{median:>8.3f}"
                  f"{r['ttft_s']:>8.3f}{r['peak_mib']:>9.0f} {r['mem']}  tokens/run {r['tokens']}")


if __name__ == "__main__":
    main()
