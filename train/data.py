"""Data preparation: packed pretraining blocks and masked instruction examples.

Pretraining: notes are tokenized (BOS first), shuffled, joined with EOS between notes and cut into
``block_size`` blocks. Instruction tuning: the prompt is ``asclepius_ui.prompts.build_prompt`` (the app's bytes)
tokenized alone with BOS exactly once, as the app does at inference; the answer is tokenized alone without BOS
and followed by EOS. Every prompt label is -100; every answer token and the final EOS are trained.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch

from asclepius_ui.prompts import build_prompt

IGNORE_INDEX = -100
NOTE_COLUMNS = ("note", "text", "discharge_summary")


class DataError(ValueError):
    """Input data that cannot be used; the message says what to fix."""


# ---------------------------------------------------------------- reading


def read_table(path: str | Path) -> datasets.Dataset:
    """Load a CSV, JSON/JSONL or parquet file as a ``datasets.Dataset``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    kind = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(p.suffix.lower())
    if kind is None:
        raise DataError(f"{p}: expected a .csv, .jsonl, .json or .parquet file")
    try:
        ds = datasets.load_dataset(kind, data_files=str(p), split="train")
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad input file
        raise DataError(f"{p}: could not be read as {kind}: {exc}") from exc
    if len(ds) == 0:
        raise DataError(f"{p}: no rows")
    return ds


def pick_column(ds: datasets.Dataset, wanted: str | None, candidates: Sequence[str] = NOTE_COLUMNS) -> str:
    """``wanted`` if given and present, else the first of ``candidates`` that the table has."""
    if wanted:
        if wanted not in ds.column_names:
            raise DataError(f"column {wanted!r} not found; columns are {', '.join(ds.column_names)}")
        return wanted
    for c in candidates:
        if c in ds.column_names:
            return c
    raise DataError(f"no note column ({' or '.join(candidates)}) found; columns are {', '.join(ds.column_names)}")


def load_notes(path: str | Path, text_column: str | None = None) -> list[str]:
    """The non-empty note texts of a CSV/JSONL/parquet file."""
    ds = read_table(path)
    col = pick_column(ds, text_column)
    notes = [t for t in ds[col] if isinstance(t, str) and t.strip()]
    if not notes:
        raise DataError(f"{path}: column {col!r} holds no text")
    return notes


def load_instructions(path: str | Path) -> list[dict[str, str]]:
    """Instruction rows (``note``, ``question``, ``answer``; ``task`` optional) from CSV/JSONL/parquet."""
    ds = read_table(path)
    missing = [c for c in ("note", "question", "answer") if c not in ds.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; columns are {', '.join(ds.column_names)}")
    rows = [r for r in ds if all(isinstance(r[c], str) and r[c].strip() for c in ("note", "question", "answer"))]
    if not rows:
        raise DataError(f"{path}: no row has a note, a question and an answer")
    return rows


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return p


# ---------------------------------------------------------------- pretraining


def pack_token_lists(token_lists: Iterable[list[int]], eos_id: int, block_size: int) -> list[list[int]]:
    """Join token lists with ``eos_id`` after each and cut into full ``block_size`` blocks (remainder dropped)."""
    if block_size < 2:
        raise DataError("block_size must be at least 2")
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(eos_id)
    n = len(stream) // block_size
    if n == 0:
        raise DataError(f"the corpus has {len(stream)} tokens, fewer than one block of {block_size}")
    return [stream[i * block_size:(i + 1) * block_size] for i in range(n)]


def build_pretraining_dataset(texts: Sequence[str], tokenizer, block_size: int, seed: int = 0) -> datasets.Dataset:
    """Tokenize (BOS per note), shuffle, join with EOS and pack into ``block_size`` blocks."""
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    ids = tokenizer([texts[i] for i in order], add_special_tokens=True)["input_ids"]
    blocks = pack_token_lists(ids, tokenizer.eos_token_id, block_size)
    return datasets.Dataset.from_dict({"input_ids": blocks})


@dataclass
class PackedCollator:
    """Stack equal-length blocks; labels are the inputs (the model shifts them)."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([f["input_ids"] for f in features], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


# ---------------------------------------------------------------- instruction tuning


def encode_instruction(tokenizer, note: str, question: str, answer: str, max_length: int,
                       template: str = "asclepius") -> dict[str, list[int]] | None:
    """Token ids and labels for one example, or ``None`` when the prompt leaves no room for the answer.

    ``input_ids`` = prompt ids exactly as the app encodes them (BOS once) + answer ids + EOS.
    ``labels`` = -100 for every prompt position, the token itself for every answer position and the EOS.
    Over-long examples are cut at ``max_length`` from the end of the answer.
    """
    prompt_ids = tokenizer(build_prompt(note, question, template), add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(answer.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt_ids) >= max_length:
        return None
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}


def build_instruction_dataset(rows: Sequence[dict[str, str]], tokenizer, max_length: int,
                              template: str = "asclepius") -> tuple[datasets.Dataset, int]:
    """Encode instruction rows; returns the dataset and the number of rows skipped for length."""
    encoded, skipped = [], 0
    for r in rows:
        e = encode_instruction(tokenizer, r["note"], r["question"], r["answer"], max_length, template)
        if e is None:
            skipped += 1
        else:
            encoded.append(e)
    if not encoded:
        raise DataError(f"every example's prompt is longer than max length {max_length}")
    return datasets.Dataset.from_list(encoded), skipped


def pad_id_for(tokenizer) -> int:
    """A padding id that is never BOS: the tokenizer's pad if it has one, else unk, else EOS.

    Its value does not matter to the loss or attention: padded positions are masked in both.
    """
    for tid in (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id):
        if tid is not None and tid != tokenizer.bos_token_id:
            return tid
    raise DataError("the tokenizer has no pad, unk or EOS token to pad with")


@dataclass
class InstructionCollator:
    """Right-pad a batch: padding has attention_mask 0 and label -100."""

    pad_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        n = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
