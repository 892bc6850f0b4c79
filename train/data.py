"""Data preparation: packed pretraining blocks and masked instruction examples.

Pretraining: distinct notes are tokenized (BOS first), shuffled, joined with EOS between notes and cut into
``block_size`` blocks. Instruction tuning: the prompt is ``asclepius_ui.prompts.build_prompt`` (the app's bytes)
encoded by ``asclepius_ui.tokenization.encode_prompt`` (BOS exactly once), as the app does at inference; the answer
is tokenized alone without BOS and followed by EOS. Every prompt label is -100; every answer token and the final EOS
are trained.

``released=True`` (``--match_released``) reproduces instead how the released checkpoints were trained (see
``encode_released`` and ``pack_released``); docs/training.md lists every difference.

Rows come from any ``asclepius_ui.data_sources`` source (file, ``datasets`` folder, hub id).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch

from asclepius_ui.data_sources import (
    Source,
    SourceError,
    canonical_rows,
    columns_of,
    read_records,
    resolve_columns,
    unique_texts,
)
from asclepius_ui.errors import InputError
from asclepius_ui.prompts import ASCLEPIUS, build_prompt
from asclepius_ui.tokenization import encode_prompt, pad_token_id

IGNORE_INDEX = -100
INSTRUCTION_COLUMNS = ("note", "question", "answer")


class DataError(InputError):
    """Input data that cannot be used; the message says what to fix."""


# ---------------------------------------------------------------- reading


def read_table(source: Source | str) -> list[dict[str, Any]]:
    """Rows of any ``asclepius_ui.data_sources`` source, with ``SourceError`` as ``DataError``."""
    try:
        return read_records(source)
    except SourceError as exc:
        raise DataError(str(exc)) from None


def load_notes(source: Source | str | Path, note_column: str | None = None, dedup: bool = True) -> list[str]:
    """The non-empty note texts of a source; each distinct note once (first-seen order) unless ``dedup=False``."""
    src = source if isinstance(source, Source) else Source(str(source))
    rows = read_table(src)
    try:
        col = resolve_columns(columns_of(rows), ["note"], {"note": note_column} if note_column else None,
                              where=src.describe())["note"]
    except SourceError as exc:
        raise DataError(str(exc)) from None
    texts = [r.get(col) for r in rows]
    notes = unique_texts(texts) if dedup else [t for t in texts if isinstance(t, str) and t.strip()]
    if not notes:
        raise DataError(f"{src.describe()}: column {col!r} holds no text")
    return notes


def load_instructions(source: Source | str | Path, columns: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Instruction rows with the canonical keys ``note``, ``question``, ``answer`` (and ``task`` when present).

    ``columns`` maps canonical names to the source's columns (``--question-column`` ...); without it the known
    names are recognised (the released synthetic dataset's, the Asclepius-R pairs' ``Question``/``Answer``/``Task``).
    """
    src = source if isinstance(source, Source) else Source(str(source))
    rows = read_table(src)
    try:
        mapping = resolve_columns(columns_of(rows), INSTRUCTION_COLUMNS, columns, optional=("task",),
                                  where=src.describe())
    except SourceError as exc:
        raise DataError(f"{exc} (missing column)") from None
    rows = canonical_rows(rows, mapping, keep_other=False)
    rows = [r for r in rows if all(isinstance(r.get(c), str) and r[c].strip() for c in INSTRUCTION_COLUMNS)]
    if not rows:
        raise DataError(f"{src.describe()}: no row has a note, a question and an answer")
    return rows


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return p


# ---------------------------------------------------------------- pretraining


def pack_token_lists(token_lists: Iterable[list[int]], eos_id: int, block_size: int,
                     bos_id: int | None = None) -> list[list[int]]:
    """Join token lists with ``eos_id`` after each and cut into full ``block_size`` blocks (remainder dropped).

    With ``bos_id`` (the released recipe) the stream is instead ``[bos] + (ids + [eos, bos]) per note``: since each
    note's ids start with BOS already, every note boundary carries BOS twice.
    """
    if block_size < 2:
        raise DataError("block_size must be at least 2")
    stream: list[int] = [] if bos_id is None else [bos_id]
    tail = [eos_id] if bos_id is None else [eos_id, bos_id]
    for ids in token_lists:
        stream.extend(ids)
        stream.extend(tail)
    n = len(stream) // block_size
    if n == 0:
        raise DataError(f"the corpus has {len(stream)} tokens, fewer than one block of {block_size}")
    return [stream[i * block_size:(i + 1) * block_size] for i in range(n)]


def build_pretraining_dataset(texts: Sequence[str], tokenizer, block_size: int, seed: int = 0,
                              released: bool = False) -> datasets.Dataset:
    """Tokenize (BOS per note), shuffle with ``seed``, join with EOS and pack into ``block_size`` blocks.

    ``released=True`` packs as the released checkpoints were pretrained (BOS twice at note boundaries).
    """
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    ids = tokenizer([texts[i] for i in order], add_special_tokens=True)["input_ids"]
    blocks = pack_token_lists(ids, tokenizer.eos_token_id, block_size,
                              bos_id=tokenizer.bos_token_id if released else None)
    return datasets.Dataset.from_dict({"input_ids": blocks})


@dataclass
class PackedCollator:
    """Stack equal-length blocks; labels are the inputs (the model shifts them); every position is attended."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([f["input_ids"] for f in features], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


# ---------------------------------------------------------------- instruction tuning

# The prompt the released checkpoints were fine-tuned on: the model card's, without the space after
# "[Instruction End]" (the reference's training script has none; its inference prompt has one).
RELEASED_TRAINING_PROMPT = ASCLEPIUS.replace("[Instruction End] \n", "[Instruction End]\n")
assert RELEASED_TRAINING_PROMPT != ASCLEPIUS


def encode_instruction(tokenizer, note: str, question: str, answer: str, max_length: int,
                       template: str = "asclepius") -> dict[str, list[int]] | None:
    """Token ids and labels for one example, or ``None`` when the prompt leaves no room for the answer.

    ``input_ids`` = ``encode_prompt(build_prompt(...))`` (the app's ids at inference, BOS once) + answer ids + EOS.
    ``labels`` = -100 for every prompt position, the token itself for every answer position and the EOS.
    Over-long examples are cut at ``max_length`` from the end of the answer.
    """
    prompt_ids = encode_prompt(tokenizer, build_prompt(note, question, template))
    answer_ids = tokenizer(answer.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt_ids) >= max_length:
        return None
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}


def released_prompt(note: str, question: str) -> str:
    """The training prompt of the released checkpoints (note and question stripped of newlines, as they were)."""
    return RELEASED_TRAINING_PROMPT.format(note=note.strip("\n"), question=question.strip("\n"))


def encode_released(tokenizer, note: str, question: str, answer: str, max_length: int) -> dict[str, list[int]] | None:
    """One example exactly as the released checkpoints were fine-tuned (the reference's ``instruction_ft.py``).

    * prompt without the space after ``[Instruction End]``; note, question and answer stripped of newlines only;
    * prompt and answer tokenized together: ``tok(prompt + answer)`` (BOS once) + EOS, then cut at ``max_length``;
    * labels: the first ``len(tok(prompt)) - 1`` positions are -100. The reference counted prompt tokens that are
      not its pad token, and its pad token was BOS, so the BOS is not counted: the last prompt position is trained
      (and a prompt cut at ``max_length`` trains its last position only, as there).
    Padding is BOS and BOS is masked out of attention: see ``ReleasedCollator``.
    """
    prompt = released_prompt(note, question)
    ids = tokenizer(prompt + answer.strip("\n"), add_special_tokens=True)["input_ids"]
    ids = (ids + [tokenizer.eos_token_id])[:max_length]  # the reference truncated "...answer</s>" as a whole
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"][:max_length]
    masked = sum(t != tokenizer.bos_token_id for t in prompt_ids)
    if masked >= len(ids):
        return None
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * masked + ids[masked:]}


def build_instruction_dataset(rows: Sequence[dict[str, str]], tokenizer, max_length: int,
                              template: str = "asclepius", released: bool = False) -> tuple[datasets.Dataset, int]:
    """Encode instruction rows; returns the dataset and the number of rows skipped for length."""
    if released and template != "asclepius":
        raise DataError("--match_released reproduces the Asclepius checkpoints: use --template asclepius")
    encoded, skipped = [], 0
    for r in rows:
        if released:
            e = encode_released(tokenizer, r["note"], r["question"], r["answer"], max_length)
        else:
            e = encode_instruction(tokenizer, r["note"], r["question"], r["answer"], max_length, template)
        if e is None:
            skipped += 1
        else:
            encoded.append(e)
    if not encoded:
        raise DataError(f"every example's prompt is longer than max length {max_length}")
    return datasets.Dataset.from_list(encoded), skipped


def pad_id_for(tokenizer) -> int:
    """``asclepius_ui.tokenization.pad_token_id`` (pad, else unk, else EOS; never BOS) with a ``DataError``."""
    try:
        return pad_token_id(tokenizer)
    except ValueError as exc:
        raise DataError(str(exc)) from None


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


@dataclass
class ReleasedCollator:
    """The released checkpoints' batches: padded with BOS, and attention_mask = (ids != BOS), so every BOS (the
    real one at position 0 included) is masked out of attention."""

    bos_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = InstructionCollator(self.bos_id)(features)
        batch["attention_mask"] = (batch["input_ids"] != self.bos_id).long()
        return batch


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m train.data mimic --noteevents NOTEEVENTS.csv.gz --pairs mimiciii_discharge.csv --out DIR``."""
    import argparse
    import sys

    from train.mimic import REFERENCE_EXCLUDE, prepare_mimic

    parser = argparse.ArgumentParser(prog="python -m train.data", description="Prepare training data.")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mimic", help="MIMIC-III discharge summaries and Asclepius-R pairs (offline, streamed)")
    m.add_argument("--noteevents", required=True, help="PhysioNet NOTEEVENTS.csv or NOTEEVENTS.csv.gz")
    m.add_argument("--pairs", required=True, help="Asclepius-R mimiciii_discharge.csv (ROW_ID, Question, Answer, Task)")
    m.add_argument("--out", required=True, help="folder for notes.jsonl, pairs.jsonl and counts.json")
    ex = m.add_mutually_exclusive_group()
    ex.add_argument("--exclude-row-ids", metavar="FILE", default=str(REFERENCE_EXCLUDE),
                    help="NOTEEVENTS ROW_IDs to leave out, one a line (default: the reference's 517 evaluation notes, "
                         "train/mimiciii_filter_index.json)")
    ex.add_argument("--no-exclude", action="store_true", help="leave nothing out: train on the evaluation notes too")
    m.add_argument("--keep-deid-tags", action="store_true",
                   help="keep the de-identification brackets as MIMIC has them (default: rewritten as the reference "
                        "did, e.g. [**Known lastname 123**] -> [Name])")
    m.add_argument("--chunksize", type=int, default=20_000, help="NOTEEVENTS rows read at a time")
    m.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        counts = prepare_mimic(args.noteevents, args.pairs, args.out,
                               None if args.no_exclude else args.exclude_row_ids, args.chunksize,
                               progress=not args.no_progress, convert_deid=not args.keep_deid_tags)
    except (InputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in counts.lines():
        print(line)
    print(f"wrote {Path(args.out) / 'notes.jsonl'} and {Path(args.out) / 'pairs.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
