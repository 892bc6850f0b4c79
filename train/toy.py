"""The whole training path at toy scale on a CPU, in one command.

    python -m train.toy --out runs/toy

Generates templated notes and question-answer pairs (``train.notes``, no API), trains a sentencepiece
tokenizer, pretrains and fine-tunes a tiny LLaMA through ``train.pretrain.run`` and ``train.finetune.run``,
and scores greedy answers to questions about held-out notes before and after fine-tuning. The last line
printed is ``heldout_exact_match before=X after=Y``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from asclepius_ui.batch import answer_rows
from asclepius_ui.engines import GenerationSettings, LoadOptions, load_engine
from asclepius_ui.engines.base import DEMO_MARKER
from asclepius_ui.prompts import build_prompt
from asclepius_ui.tasks import TASKS, fill_instruction
from train import finetune, pretrain
from train.args import (
    FinetuneDataArguments,
    FinetuneTrainingArguments,
    LoraArguments,
    ModelArguments,
    PretrainDataArguments,
    PretrainTrainingArguments,
)
from train.data import write_jsonl
from train.notes import SyntheticNote, make_notes
from train.pretrain import save_tokenizer
from train.tiny_model import init_model, tiny_llama_config
from train.tokenizer import train_sentencepiece


@dataclass
class ToyConfig:
    """Sizes of one toy run."""

    train_notes: int = 800
    heldout_notes: int = 16
    vocab_size: int = 640
    hidden: int = 96
    layers: int = 3
    heads: int = 4
    context: int = 512
    block_size: int = 256
    pretrain_epochs: float = 2.0
    pretrain_lr: float = 3e-3
    finetune_epochs: float = 2.0
    finetune_lr: float = 3e-3
    batch_size: int = 8
    seed: int = 0
    max_new_tokens: int = 64


# the app's fallback demo model: built in well under a minute on 2 cores
DEMO_CONFIG = ToyConfig(train_notes=240, heldout_notes=1, hidden=64, layers=2, heads=4, pretrain_epochs=1.0,
                        finetune_epochs=1.0, pretrain_lr=6e-3, finetune_lr=6e-3)


def auto_threads() -> int:
    """Torch threads for the cores not already busy (2 threads on 2 busy cores run far slower than 1)."""
    cores = os.cpu_count() or 1
    free = cores - os.getloadavg()[0]
    return max(1, min(cores, round(free)))


# ---------------------------------------------------------------- corpus


def qa_rows(notes: list[SyntheticNote], offset: int = 0) -> list[dict[str, str]]:
    """The notes' own question-answer pairs plus the app's 8 task instructions, answered from the facts."""
    return [
        {"note_id": f"toy-{offset + i}", "task": task, "note": n.text, "question": q, "answer": a}
        for i, n in enumerate(notes)
        for task, q, a in [*n.qa, *task_pairs(n)]
    ]


def task_pairs(n: SyntheticNote) -> list[tuple[str, str, str]]:
    """(task, instruction, answer) for the app's task picker instructions, answered from the note's facts.

    These are exactly the instructions the Task dropdown writes, so the demo answers the picker's tasks.
    """
    f = n.facts
    who = re.search(r"Patient: ([^,\n]+), (\d+)-year-old (\w+)", n.text)
    name, sex = (who.group(1), who.group(3)) if who else ("the patient", "patient")
    pick = {
        "ner": ("medical conditions", f"{f['dx']}; {f['history']}"),
        "abbreviation": (f["abbr"], f["expansion"]),
        "relation": (f["drug"], f"{f['drug']} was given to treat the {f['dx']} that {f['test']} confirmed."),
        "temporal": ("the follow-up", f"after discharge: in {f['weeks']} weeks with {f['follow']}"),
        "coreference": ("The patient", f"{name}, the {f['age']}-year-old {sex}"),
        "paraphrasing": ("hospital course", f"A {f['test']} showed {f['dx']}. You got {f['drug']} and got better."),
        "summarization": (None, f"Treated for {f['dx']} with {f['drug']} after {f['test']}; follow up with "
                                f"{f['follow']} in {f['weeks']} weeks."),
        "qa": ("What was the discharge diagnosis?", f["dx"]),
    }
    return [(key, fill_instruction(TASKS[key], arg), answer) for key, (arg, answer) in pick.items()]


def make_corpus(cfg: ToyConfig, data_dir: Path) -> tuple[list[SyntheticNote], list[SyntheticNote]]:
    """Train and held-out notes (no held-out note text appears in training); written as JSONL."""
    train = make_notes(cfg.train_notes, cfg.seed)
    seen = {n.text for n in train}
    heldout = [n for n in make_notes(cfg.heldout_notes * 2, cfg.seed + 10_000) if n.text not in seen]
    heldout = heldout[: cfg.heldout_notes]
    write_jsonl(({"note_id": f"toy-{i}", "note": n.text} for i, n in enumerate(train)), data_dir / "notes.jsonl")
    write_jsonl(qa_rows(train), data_dir / "instructions.jsonl")
    write_jsonl(qa_rows(heldout, offset=cfg.train_notes), data_dir / "heldout.jsonl")
    return train, heldout


def tokenizer_texts(notes: list[SyntheticNote]) -> list[str]:
    """Notes, full prompts and answers, so the template's words become whole tokens."""
    texts = []
    for n in notes:
        texts.append(n.text)
        for _, q, a in [*n.qa, *task_pairs(n)]:
            texts.append(build_prompt(n.text, q))
            texts.append(a)
    return texts


# ---------------------------------------------------------------- evaluation


def normalize(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().lower()).strip(" .")


def greedy_answers(engine, rows: list[dict[str, str]], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy answers to each row's question about its note through the app's own answer loop (the ask flow, BOS
    once, left-padded batches); a row that cannot fit the context with ``max_new_tokens`` gets no answer (it counts
    as a miss), as in the app."""
    settings = GenerationSettings.from_preset("greedy", max_new_tokens=max_new_tokens)
    answered = {id(a.row): a for a in answer_rows(engine, rows, settings, batch_size=batch_size)}
    return [a.result.text if a.result is not None else "" for a in (answered[id(r)] for r in rows)]


def exact_match(model_dir: str | Path, rows: list[dict[str, str]], max_new_tokens: int = 64) -> float:
    """Share of rows whose greedy answer equals the reference after normalisation."""
    return exact_match_by_task(model_dir, rows, max_new_tokens)["all"]


def exact_match_by_task(model_dir: str | Path, rows: list[dict[str, str]], max_new_tokens: int = 64) -> dict:
    """Exact match over all rows (``"all"``) and per task."""
    engine = load_engine(LoadOptions(str(model_dir), backend="transformers", precision="fp32", device="cpu"))
    got = greedy_answers(engine, rows, max_new_tokens)
    hits: dict[str, list[bool]] = {}
    for g, r in zip(got, rows, strict=True):
        ok = normalize(g) == normalize(r["answer"])
        hits.setdefault("all", []).append(ok)
        hits.setdefault(r["task"], []).append(ok)
    return {k: round(sum(v) / len(v), 3) for k, v in hits.items()}


# ---------------------------------------------------------------- training


def cpu_args(cls, out: Path, epochs: float, lr: float, batch: int, seed: int):
    """Toy-scale training arguments: same scripts, CPU-sized hyper-parameters."""
    return cls(
        output_dir=str(out), num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=batch,
        global_batch_size=0, bf16=False, activation_checkpointing=False, use_cpu=True, save_strategy="no",
        logging_steps=20, seed=seed, dataloader_num_workers=0, disable_tqdm=False, warmup_steps=0.03,
        optim="adamw_torch",
    )


def run_toy(out: str | Path, cfg: ToyConfig | None = None, evaluate: bool = True) -> dict[str, float | str]:
    """Build corpus and tokenizer, pretrain, fine-tune; returns timings and held-out exact match."""
    cfg = cfg or ToyConfig()
    out = Path(out)
    data = out / "data"
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    train, heldout = make_corpus(cfg, data)
    tok_dir = train_sentencepiece(tokenizer_texts(train), out / "tokenizer", vocab_size=cfg.vocab_size)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = init_model(tiny_llama_config(len(tok), cfg.hidden, cfg.layers, cfg.heads, cfg.context), cfg.seed)
    model.save_pretrained(out / "init")
    save_tokenizer(tok, out / "init")

    pretrain.run(
        ModelArguments(str(out / "init")),
        PretrainDataArguments(str(data / "notes.jsonl"), model_max_length=cfg.block_size),
        cpu_args(PretrainTrainingArguments, out / "pretrain", cfg.pretrain_epochs, cfg.pretrain_lr, cfg.batch_size,
                 cfg.seed),
    )
    rows = [json.loads(line) for line in (data / "heldout.jsonl").read_text().splitlines()]
    result: dict[str, float | str] = {}
    if evaluate:
        result["before_by_task"] = exact_match_by_task(out / "pretrain", rows, cfg.max_new_tokens)
        result["before"] = result["before_by_task"]["all"]
    finetune.run(
        ModelArguments(str(out / "pretrain")),
        FinetuneDataArguments(str(data / "instructions.jsonl"), model_max_length=cfg.context),
        LoraArguments(),
        cpu_args(FinetuneTrainingArguments, out / "finetune", cfg.finetune_epochs, cfg.finetune_lr, cfg.batch_size,
                 cfg.seed),
    )
    if evaluate:
        result["after_by_task"] = exact_match_by_task(out / "finetune", rows, cfg.max_new_tokens)
        result["after"] = result["after_by_task"]["all"]
        result["heldout_rows"] = len(rows)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["model_dir"] = str(out / "finetune")
    result["base_dir"] = str(out / "pretrain")
    (out / "toy_result.json").write_text(json.dumps({**result, "config": asdict(cfg)}, indent=2))
    return result


DEMO_CONTEXT = 2048


def export_demo(model_dir: str | Path, dest: str | Path, result: dict | None = None, stage: str = "finetuned") -> Path:
    """Copy a toy model into ``dest`` as a compact demo checkpoint (bf16 safetensors) with the demo marker.

    ``stage`` is "finetuned" (the app's demo) or "pretrained" (the same model before instruction fine-tuning,
    the second contender of the out-of-the-box comparison); ``result`` (from ``run_toy``) puts the measured
    held-out exact match in the marker, which the page shows.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    # Trained on short notes, but RoPE runs at any position: let the demo take the example notes whole.
    model.config.max_position_embeddings = max(model.config.max_position_embeddings, DEMO_CONTEXT)
    model.save_pretrained(dest)
    save_tokenizer(AutoTokenizer.from_pretrained(model_dir), dest)
    marker = {"demo": True, "not_for_clinical_use": True, "stage": stage,
              "label": ("demo after instruction fine-tuning" if stage == "finetuned"
                        else "demo before instruction fine-tuning (pretrained on notes only)"),
              "about": "tiny LLaMA trained by train.toy on templated synthetic notes; demonstrates the app only"}
    if result and "after" in result:
        key = "after" if stage == "finetuned" else "before"
        marker["heldout_exact_match"] = result[key]
        marker["heldout_exact_match_by_task"] = result.get(f"{key}_by_task", {})
        marker["heldout_rows"] = result.get("heldout_rows")
    (dest / DEMO_MARKER).write_text(json.dumps(marker, indent=2))
    return dest


def write_examples(heldout_jsonl: Path, dest: str | Path, count: int = 2) -> list[Path]:
    """The first ``count`` held-out notes as ``demo_<diagnosis>.txt``: notes the demo was never trained on."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    notes: dict[str, str] = {}
    for line in heldout_jsonl.read_text().splitlines():
        row = json.loads(line)
        notes.setdefault(row["note_id"], row["note"])
    written = []
    for text in list(notes.values())[:count]:
        dx = re.search(r"Discharge Diagnosis: (.+)", text)
        slug = re.sub(r"[^a-z0-9]+", "_", (dx.group(1) if dx else "note").lower()).strip("_")
        path = dest / f"demo_{slug}.txt"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def build_demo_model(out_dir: str | Path, work_dir: str | Path | None = None, threads: int | None = None) -> Path:
    """A small demo checkpoint for the app, built from scratch in about half a minute (no evaluation)."""
    import tempfile

    before = torch.get_num_threads()
    torch.set_num_threads(threads or auto_threads())
    try:
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            result = run_toy(tmp, DEMO_CONFIG, evaluate=False)
            return export_demo(result["model_dir"], out_dir)
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="working folder (corpus, tokenizer, checkpoints)")
    p.add_argument("--export-demo", metavar="DIR", help="also write the fine-tuned model here as the app's demo")
    p.add_argument("--export-base", metavar="DIR", help="also write the model before fine-tuning here (the second "
                   "demo contender for compare mode)")
    p.add_argument("--export-examples", metavar="DIR", help="also write held-out notes here as example notes the "
                   "demo was trained to handle (demo_*.txt)")
    p.add_argument("--heldout-notes", type=int, default=ToyConfig.heldout_notes)
    p.add_argument("--train-notes", type=int, default=ToyConfig.train_notes)
    p.add_argument("--pretrain-epochs", type=float, default=ToyConfig.pretrain_epochs)
    p.add_argument("--finetune-epochs", type=float, default=ToyConfig.finetune_epochs)
    p.add_argument("--seed", type=int, default=ToyConfig.seed)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: the idle cores)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(a.threads or auto_threads())
    cfg = ToyConfig(train_notes=a.train_notes, pretrain_epochs=a.pretrain_epochs, finetune_epochs=a.finetune_epochs,
                    seed=a.seed, heldout_notes=a.heldout_notes)
    result = run_toy(a.out, cfg)
    if a.export_demo:
        export_demo(result["model_dir"], a.export_demo, result)
        print(f"demo model written to {a.export_demo}")
    if a.export_base:
        export_demo(result["base_dir"], a.export_base, result, stage="pretrained")
        print(f"demo base model written to {a.export_base}")
    if a.export_examples:
        write_examples(Path(a.out) / "data" / "heldout.jsonl", a.export_examples)
        print(f"held-out example notes written to {a.export_examples}")
    print(f"toy run took {result['seconds']} s; model in {result['model_dir']}")
    print(f"heldout_exact_match before={result['before']:.3f} after={result['after']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
