"""Data preparation: exact instruction masking, padding, packing, file formats."""

from __future__ import annotations

import datasets
import pandas as pd
import pytest
import sentencepiece as spm
import torch
from transformers import AutoTokenizer

from asclepius_ui.prompts import build_prompt
from train import data
from train.args import ModelArguments, PretrainDataArguments
from train.notes import make_notes
from train.pretrain import load_pretraining_data
from train.tiny_model import init_model, tiny_llama_config
from train.tokenizer import train_sentencepiece

NOTE = "Pt admitted with CHF. Treated with furosemide.\n"
QUESTION = "\nWhat does CHF stand for?"
ANSWER = "congestive heart failure"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    notes = make_notes(40, seed=1)
    texts = [n.text for n in notes] + [build_prompt(n.text, q) for n in notes for _, q, _ in n.qa]
    return train_sentencepiece(texts, tmp_path_factory.mktemp("tok"), vocab_size=400)


@pytest.fixture(scope="module")
def tok(tok_dir):
    return AutoTokenizer.from_pretrained(tok_dir)


@pytest.fixture(scope="module")
def sp(tok_dir):
    return spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))


def test_instruction_labels_exact(tok, sp):
    """Hand-built with sentencepiece directly: BOS + prompt | answer + EOS; only answer and EOS are trained."""
    prompt = build_prompt(NOTE, QUESTION)
    prompt_sp = [1] + sp.encode(prompt)  # what the app feeds at inference: BOS exactly once
    answer_sp = sp.encode(ANSWER)
    ex = data.encode_instruction(tok, NOTE, QUESTION, ANSWER, max_length=2048)

    assert ex["input_ids"] == prompt_sp + answer_sp + [2]
    assert ex["labels"] == [-100] * len(prompt_sp) + answer_sp + [2]
    n = len(prompt_sp)
    # the reference code's off-by-one would train on the last prompt token; here it is masked
    assert ex["labels"][n - 1] == -100 and ex["input_ids"][n - 1] == prompt_sp[-1]
    assert ex["labels"][n] == answer_sp[0] != -100
    assert ex["labels"][-1] == tok.eos_token_id == 2
    assert sum(label != -100 for label in ex["labels"]) == len(answer_sp) + 1
    assert ex["input_ids"].count(tok.bos_token_id) == 1
    # the trained prompt is byte-identical to the app's prompt, and its ids to the app's encoding
    assert sp.decode(ex["input_ids"][1:n]) == prompt
    assert ex["input_ids"][:n] == tok(prompt)["input_ids"]


def test_prompt_ids_not_merged_with_answer(tok):
    """Tokenizing prompt+answer jointly would change the last prompt token; we tokenize them apart."""
    note, q, a = "Pt stable.", "Diagnosis?", "atrial fibrillation"
    prompt_ids = tok(build_prompt(note, q))["input_ids"]
    ex = data.encode_instruction(tok, note, q, a, max_length=512)
    assert ex["input_ids"][: len(prompt_ids)] == prompt_ids


def test_loss_only_on_answer_tokens(tok):
    model = init_model(tiny_llama_config(len(tok), hidden=32, layers=2, heads=2, context=512))
    ex = data.encode_instruction(tok, NOTE, QUESTION, ANSWER, max_length=2048)
    ids = torch.tensor([ex["input_ids"]])
    with torch.no_grad():
        out = model(input_ids=ids, labels=torch.tensor([ex["labels"]]))
    n = ex["labels"].index(next(x for x in ex["labels"] if x != -100))
    manual = torch.nn.functional.cross_entropy(out.logits[0, n - 1:-1], ids[0, n:])
    assert out.loss.item() == pytest.approx(manual.item(), rel=1e-5)


def test_truncation_and_skip(tok):
    ex = data.encode_instruction(tok, NOTE, QUESTION, ANSWER * 20, max_length=len(tok(build_prompt(NOTE, QUESTION))
                                                                                  ["input_ids"]) + 5)
    assert len(ex["input_ids"]) == len(ex["labels"]) and sum(x != -100 for x in ex["labels"]) == 5
    assert data.encode_instruction(tok, NOTE * 50, QUESTION, ANSWER, max_length=64) is None
    rows = [{"note": NOTE, "question": QUESTION, "answer": ANSWER}, {"note": NOTE * 50, "question": "q", "answer": "a"}]
    room = len(tok(build_prompt(NOTE, QUESTION))["input_ids"]) + 10
    ds, skipped = data.build_instruction_dataset(rows, tok, max_length=room)
    assert len(ds) == 1 and skipped == 1


def test_collator_pads_with_mask_not_bos(tok):
    model = init_model(tiny_llama_config(len(tok), hidden=32, layers=2, heads=2, context=512))
    a = data.encode_instruction(tok, NOTE, QUESTION, ANSWER, 2048)
    b = data.encode_instruction(tok, "Short.", "Drug?", "furosemide", 2048)
    pad = data.pad_id_for(tok)
    assert pad != tok.bos_token_id
    batch = data.InstructionCollator(pad)([a, b])
    k = len(b["input_ids"])
    assert batch["input_ids"].shape == (2, len(a["input_ids"]))
    assert (batch["input_ids"][1, k:] == pad).all()
    assert (batch["attention_mask"][1, k:] == 0).all() and (batch["attention_mask"][1, :k] == 1).all()
    assert (batch["labels"][1, k:] == -100).all()
    assert batch["labels"][1, :k].tolist() == b["labels"]
    assert (batch["input_ids"][:, 1:] != tok.bos_token_id).all()
    # padding changes nothing: the padded batch's loss is the token-weighted loss of the separate examples
    with torch.no_grad():
        padded = model(**batch).loss.item()
        sums, counts = 0.0, 0
        for ex in (a, b):
            out = model(input_ids=torch.tensor([ex["input_ids"]]), labels=torch.tensor([ex["labels"]]))
            n = sum(x != -100 for x in ex["labels"])
            sums += out.loss.item() * n
            counts += n
    assert padded == pytest.approx(sums / counts, rel=1e-4)


def test_pack_token_lists_exact():
    blocks = data.pack_token_lists([[1, 5, 6], [1, 7], [1, 8, 9, 10]], eos_id=2, block_size=4)
    assert blocks == [[1, 5, 6, 2], [1, 7, 2, 1], [8, 9, 10, 2]]
    assert data.pack_token_lists([[1, 5, 6], [1, 7, 8]], eos_id=2, block_size=3) == [[1, 5, 6], [2, 1, 7]]
    with pytest.raises(data.DataError, match="fewer than one block"):
        data.pack_token_lists([[1, 5]], eos_id=2, block_size=16)


def test_pretraining_dataset_shuffled_eos_joined_packed(tok, tmp_path):
    texts = [n.text for n in make_notes(12, seed=3)]
    ds = data.build_pretraining_dataset(texts, tok, block_size=64, seed=7)
    assert all(len(x) == 64 for x in ds["input_ids"])
    flat = [t for block in ds["input_ids"] for t in block]
    per_note = tok(texts)["input_ids"]
    total = sum(len(x) + 1 for x in per_note)
    assert len(ds) == total // 64
    # the stream is the notes in a seeded shuffled order, each as BOS ... EOS
    import random

    order = list(range(len(texts)))
    random.Random(7).shuffle(order)
    assert order != sorted(order)
    stream = [t for i in order for t in per_note[i] + [tok.eos_token_id]]
    assert flat == stream[: len(flat)]
    assert data.build_pretraining_dataset(texts, tok, 64, seed=7)["input_ids"] == ds["input_ids"]
    batch = data.PackedCollator()([ds[0], ds[1]])
    assert torch.equal(batch["labels"], batch["input_ids"]) and batch["attention_mask"].all()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_notes_from_csv_jsonl_parquet_saved_with_datasets(fmt, tok_dir, tmp_path):
    texts = [n.text for n in make_notes(10, seed=4)]
    df = pd.DataFrame({"note_id": range(10), "text": texts})
    path = tmp_path / f"notes.{fmt}"
    {"csv": lambda: df.to_csv(path, index=False), "jsonl": lambda: df.to_json(path, orient="records", lines=True),
     "parquet": lambda: df.to_parquet(path)}[fmt]()
    assert data.load_notes(path) == texts
    tok = AutoTokenizer.from_pretrained(tok_dir)
    saved = tmp_path / "packed"
    ds = load_pretraining_data(PretrainDataArguments(str(path), model_max_length=32, save_prepared_to=str(saved)),
                               tok, seed=0)
    again = load_pretraining_data(PretrainDataArguments(str(saved)), tok, seed=0)
    assert isinstance(again, datasets.Dataset) and again["input_ids"] == ds["input_ids"]
    assert ModelArguments(str(tok_dir)).attn_implementation == "auto"


def test_bad_inputs_have_clear_messages(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.load_notes(tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(data.DataError, match="expected a .csv"):
        data.load_notes(tmp_path / "x.txt")
    (tmp_path / "n.csv").write_text("id,body\n1,hello\n")
    with pytest.raises(data.DataError, match="no note column"):
        data.load_notes(tmp_path / "n.csv")
    with pytest.raises(data.DataError, match="missing column"):
        data.load_instructions(tmp_path / "n.csv")


# ---------------------------------------------------------------- --match_released


def test_released_prompt_bytes():
    """The released checkpoints were fine-tuned on the card's prompt without the space after [Instruction End]."""
    from asclepius_ui.prompts import ASCLEPIUS

    assert "[Instruction End] \n" in ASCLEPIUS  # the inference prompt (model card) keeps it
    prompt = data.released_prompt("\nNote.\n", "\nWhat?\n")
    assert prompt.endswith("[Instruction Begin]\nWhat?\n[Instruction End]\n")
    assert prompt == build_prompt("Note.", "What?").replace("[Instruction End] \n", "[Instruction End]\n")
    assert prompt.startswith("You are an intelligent clinical languge model.\n")


def test_released_encoding_joint_tokenization_and_off_by_one_mask(tok, sp):
    """ids = BOS + sp(prompt + answer) + EOS, jointly; labels mask len(BOS + sp(prompt)) - 1 positions."""
    answer = "congestive heart failure\n"
    ex = data.encode_released(tok, NOTE, QUESTION, answer, max_length=2048)
    prompt = data.released_prompt(NOTE, QUESTION)
    joint = [1] + sp.encode(prompt + answer.strip("\n")) + [2]
    assert ex["input_ids"] == joint
    n_prompt = len([1] + sp.encode(prompt))
    assert ex["labels"] == [-100] * (n_prompt - 1) + joint[n_prompt - 1:]
    assert ex["labels"][n_prompt - 2] == -100 and ex["labels"][n_prompt - 1] != -100  # last prompt token trained
    # the default encoding differs exactly there: the app's prompt bytes, separate tokenization, exact mask
    ours = data.encode_instruction(tok, NOTE, QUESTION, answer, max_length=2048)
    assert ours["input_ids"] != ex["input_ids"]
    # truncation cuts "...answer</s>" as a whole, as the reference did
    short = data.encode_released(tok, NOTE, QUESTION, answer * 10, max_length=n_prompt + 3)
    assert short["input_ids"] == ([1] + sp.encode(prompt + (answer * 10).strip("\n")))[:n_prompt + 3]
    # a prompt longer than max_length keeps the reference's behaviour: only the last position carries loss
    long = data.encode_released(tok, NOTE * 50, QUESTION, answer, max_length=64)
    assert len(long["input_ids"]) == 64 and sum(x != -100 for x in long["labels"]) == 1


def test_released_collator_pads_with_bos_and_masks_every_bos(tok):
    a = data.encode_released(tok, NOTE, QUESTION, ANSWER, 2048)
    b = data.encode_released(tok, "Short.", "Drug?", "furosemide", 2048)
    batch = data.ReleasedCollator(tok.bos_token_id)([a, b])
    k = len(b["input_ids"])
    assert (batch["input_ids"][1, k:] == 1).all()  # pad = BOS
    assert batch["attention_mask"][:, 0].tolist() == [0, 0]  # the real BOS is masked out of attention too
    assert batch["attention_mask"][1, 1:k].all() and not batch["attention_mask"][1, k:].any()
    assert (batch["labels"][1, k:] == -100).all()
    assert torch.equal(batch["attention_mask"], (batch["input_ids"] != 1).long())
    # the default collator never pads with BOS and keeps BOS attended
    ours = data.InstructionCollator(data.pad_id_for(tok))([a, b])
    assert ours["attention_mask"][:, 0].tolist() == [1, 1] and data.pad_id_for(tok) != 1


def test_released_pretraining_stream_doubles_bos_at_note_boundaries(tok):
    texts = [n.text for n in make_notes(6, seed=3)]
    ds = data.build_pretraining_dataset(texts, tok, block_size=32, seed=5, released=True)
    import random

    order = list(range(len(texts)))
    random.Random(5).shuffle(order)
    per_note = tok([texts[i] for i in order])["input_ids"]
    assert all(ids[0] == 1 for ids in per_note)
    stream = [1] + [t for ids in per_note for t in ids + [2, 1]]  # BOS BOS note EOS BOS BOS note EOS BOS ...
    flat = [t for block in ds["input_ids"] for t in block]
    assert flat == stream[:len(flat)] and len(ds) == len(stream) // 32
    assert flat[:2] == [1, 1]
    boundary = len(per_note[0]) + 1
    assert flat[boundary:boundary + 3] == [2, 1, 1]
    ours = [t for block in data.build_pretraining_dataset(texts, tok, 32, seed=5)["input_ids"] for t in block]
    assert ours[:2] != [1, 1] and all(not (x == 1 and y == 1) for x, y in zip(ours, ours[1:], strict=False))


def test_default_prompt_ids_follow_encode_prompt_bos_rule(tok):
    """train = inference: the prompt ids are asclepius_ui.tokenization.encode_prompt's, BOS exactly once."""
    from asclepius_ui.tokenization import encode_prompt

    prompt = build_prompt(NOTE, QUESTION)
    ex = data.encode_instruction(tok, NOTE, QUESTION, ANSWER, 2048)
    n = len(encode_prompt(tok, prompt))
    assert ex["input_ids"][:n] == encode_prompt(tok, prompt) and ex["labels"][:n] == [-100] * n
