"""``asclepius COMMAND [ARGS]``: one command table for the app and every script.

Each command is a module with ``main(argv) -> int``; ``python -m MODULE`` keeps working for each of them.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one line of help). The order is the order of the help text.
COMMANDS: dict[str, tuple[str, str]] = {
    "app": ("asclepius_ui.launch", "serve the web app (chat, compare, studies, admin)"),
    "users": ("asclepius_ui.auth", "add or list raters and admins in a users file"),
    "export": ("asclepius_ui.export", "export ratings, comparisons, studies or DPO pairs to CSV/JSONL"),
    "convert": ("asclepius_ui.convert", "convert a model folder to GGUF for llama.cpp (f16, q8_0, q4_k_m)"),
    "generate": ("eval.generate", "answer a file of questions with any engine (batch answers)"),
    "judge": ("eval.judge", "score answers with an LLM judge through an OpenAI-compatible endpoint"),
    "check": ("eval.check", "check answers against their notes: numbers, drugs, sides, negation (offline)"),
    "report": ("eval.report", "tables and plots from judge scores and expert ratings"),
    "make-study": ("eval.make_study", "build a blinded expert study file from answer files"),
    "synth": ("train.synth", "synthesise notes, instructions and answers through an endpoint"),
    "data": ("train.data", "prepare training data (`data mimic`: MIMIC-III for Asclepius-R, offline)"),
    "pretrain": ("train.pretrain", "continued pretraining on clinical notes"),
    "finetune": ("train.finetune", "instruction fine-tuning (full, LoRA or QLoRA)"),
    "toy": ("train.toy", "the end-to-end CPU toy run (also builds the demo model)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return f"usage: asclepius COMMAND [ARGS]\n\ncommands:\n{rows}\n\n`asclepius COMMAND --help` for its options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"asclepius: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv = [f"asclepius {name}", *rest]  # argparse names the command in its messages
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
