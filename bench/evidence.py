"""How long "Where in the note" takes: ``find_evidence`` + ``render_html`` on a ~2,000-token note, on the CPU.

    python bench/evidence.py [--tokens 2000] [--rounds 50]

The note is the shipped example notes repeated until the demo model's tokenizer counts ``--tokens`` tokens;
the answer is eight sentences, half taken from the note with typos, half made up. Prints the median and worst
time of ``--rounds`` runs and their ratio to the 100 ms budget, all measured in this one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from transformers import AutoTokenizer

from asclepius_ui.demo import SHIPPED
from asclepius_ui.evidence import find_evidence, render_html
from asclepius_ui.examples import example_notes

BUDGET_S = 0.100
ANSWER = ("She was given IV furosemid 40 mg twice a day. Her potassium dropped and was replaced. "
          "Metoprolol succinate was restarted at 25 mg daily. Echo showed an EF of 25-30%. "
          "She underwent a liver transplant. The cardiologist prescribed amiodarone for ventricular tachycardia. "
          "She was discharged to a rehabilitation facility. Her daughter will manage her insulin pump.")


def make_note(tokens: int) -> tuple[str, int]:
    tok = AutoTokenizer.from_pretrained(SHIPPED, model_max_length=10**9)
    base = "\n\n".join(example_notes().values())
    note = base
    while len(tok(note)["input_ids"]) < tokens:
        note += "\n\n" + base
    words = note.split(" ")
    lo, hi = 1, len(words)
    while lo < hi:  # shortest prefix with at least ``tokens`` tokens
        mid = (lo + hi) // 2
        if len(tok(" ".join(words[:mid]))["input_ids"]) >= tokens:
            hi = mid
        else:
            lo = mid + 1
    note = " ".join(words[:lo])
    return note, len(tok(note)["input_ids"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--chars", type=int, default=10_000, help="also a note this long (a real LLaMA tokenizer makes "
                   "about 2,000 tokens of 10,000 characters; the demo's small vocabulary makes more, shorter ones)")
    p.add_argument("--rounds", type=int, default=50)
    a = p.parse_args(argv)
    note, n_tokens = make_note(a.tokens)
    base = "\n\n".join(example_notes().values())
    long_note = (base * (a.chars // len(base) + 1))[: a.chars]
    for label, text in ((f"{n_tokens} demo-tokenizer tokens", note), (f"{len(long_note)} characters", long_note)):
        run(label, text, a.rounds)
    return 0


def run(label: str, note: str, rounds: int) -> None:
    find_evidence(note, ANSWER)  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ev = find_evidence(note, ANSWER)
        render_html(note, ev)
        times.append(time.perf_counter() - t0)
    med, worst = statistics.median(times), max(times)
    print(f"note: {label} ({len(note)} characters); answer: {len(ANSWER)} characters")
    print(f"supporting sentences: {len(ev.spans)}; unsupported answer sentences: {len(ev.unsupported)}")
    print(f"median {med * 1000:.2f} ms, worst {worst * 1000:.2f} ms over {rounds} runs")
    print(f"median / budget(100 ms) = {med / BUDGET_S:.3f}; worst / budget = {worst / BUDGET_S:.3f}")


if __name__ == "__main__":
    sys.exit(main())
