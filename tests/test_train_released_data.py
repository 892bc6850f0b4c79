"""Both seed systems' released data, in their released schemas, end to end through toy-sized pretrain and finetune.

* Asclepius: a parquet with the columns of starmpcc/Asclepius-Synthetic-Clinical-Notes (patient_id, note, question,
  answer, task; a note repeated once per question).
* Asclepius-R: a gzipped NOTEEVENTS with several categories and a mimiciii_discharge.csv (ROW_ID, Question, Answer,
  Task) with a missing ROW_ID, a ROW_ID of a radiology report, an excluded ROW_ID and a blank one.
"""

from __future__ import annotations

import json
import socket
import stat

import datasets
import pandas as pd
import pytest
from transformers import AutoTokenizer

from train import data, finetune, pretrain, toy
from train.args import (
    FinetuneDataArguments,
    FinetuneTrainingArguments,
    LoraArguments,
    ModelArguments,
    parse,
)
from train.deid import convert_deid_tags
from train.mimic import REFERENCE_EXCLUDE, prepare_mimic, read_row_ids
from train.notes import make_notes
from train.tiny_model import init_model, tiny_llama_config
from train.tokenizer import train_sentencepiece

CPU = ["--use_cpu", "--bf16", "False", "--activation_checkpointing", "False", "--global_batch_size", "0",
       "--report_to", "none", "--per_device_train_batch_size", "2", "--disable_tqdm", "True",
       "--optim", "adamw_torch", "--save_strategy", "no"]
TASKS = ["Named Entity Recognition", "Abbreviation Expansion", "Summarization"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    notes = make_notes(10, seed=9)
    tok_dir = train_sentencepiece(toy.tokenizer_texts(notes), root / "tok", vocab_size=400)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = init_model(tiny_llama_config(len(tok), hidden=32, layers=2, heads=2, context=512))
    model.save_pretrained(root / "model")
    pretrain.save_tokenizer(tok, root / "model")
    return root / "model"


@pytest.fixture(scope="module")
def synthetic_parquet(tmp_path_factory):
    """The released synthetic dataset's schema: each note appears once per question."""
    notes = make_notes(6, seed=11)
    rows = [{"patient_id": 100 + i, "note": n.text, "question": q, "answer": a, "task": TASKS[j % len(TASKS)]}
            for i, n in enumerate(notes) for j, (_, q, a) in enumerate(n.qa[:3])]
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path, rows


def test_synthetic_dataset_columns_recognised_and_notes_deduplicated(synthetic_parquet):
    path, rows = synthetic_parquet
    notes = data.load_notes(path)
    assert len(rows) == 18 and len(notes) == 6 == len({r["note"] for r in rows})
    assert notes == list(dict.fromkeys(r["note"] for r in rows))
    assert len(data.load_notes(path, dedup=False)) == 18
    pairs = data.load_instructions(path)
    assert [(p["question"], p["answer"], p["task"]) for p in pairs] == [
        (r["question"], r["answer"], r["task"]) for r in rows]
    assert set(pairs[0]) == {"note", "question", "answer", "task"}


def test_column_flags_map_other_names(tmp_path, synthetic_parquet):
    _, rows = synthetic_parquet
    renamed = [{"summary": r["note"], "ask": r["question"], "reply": r["answer"], "kind": r["task"]} for r in rows]
    path = tmp_path / "mine.csv.gz"
    pd.DataFrame(renamed).to_csv(path, index=False)
    _, dargs, _, _ = parse((ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
                           ["--model_name_or_path", "m", "--data_path", str(path), "--note-column", "summary",
                            "--question-column", "ask", "--answer-column", "reply", "--task-column", "kind",
                            "--use_cpu"])
    pairs = data.load_instructions(dargs.source(), dargs.columns())
    assert pairs[4] == {"note": rows[4]["note"], "question": rows[4]["question"], "answer": rows[4]["answer"],
                        "task": rows[4]["task"]}
    with pytest.raises(data.DataError, match="no question column"):
        data.load_instructions(path)


def test_synthetic_dataset_end_to_end_pretrain_then_finetune(init_dir, synthetic_parquet, tmp_path):
    path, _ = synthetic_parquet
    pt = tmp_path / "pt"
    assert pretrain.main(["--model_name_or_path", str(init_dir), "--data_path", str(path), "--model_max_length",
                          "64", "--output_dir", str(pt), "--max_steps", "2", *CPU]) == 0
    ft = tmp_path / "ft"
    assert finetune.main(["--model_name_or_path", str(pt), "--data_path", str(path), "--model_max_length", "512",
                          "--output_dir", str(ft), "--max_steps", "2", *CPU]) == 0
    assert (ft / "model.safetensors").is_file() and (ft / "tokenizer.model").is_file()


# ---------------------------------------------------------------- MIMIC-III


EVALUATION_NOTE = 917067  # the first ROW_ID of the reference's list


def _mimic_files(root):
    notes = make_notes(8, seed=21)
    rows = []
    for i, n in enumerate(notes):
        rows.append({"ROW_ID": 1000 + i, "SUBJECT_ID": 7, "HADM_ID": 9, "CHARTDATE": "2150-01-01", "CHARTTIME": "",
                     "STORETIME": "", "CATEGORY": "Discharge summary", "DESCRIPTION": "Report", "CGID": "",
                     "ISERROR": "", "TEXT": n.text.replace("Patient:", "Patient: [**Known lastname 123**],")})
    rows.append({**rows[0], "ROW_ID": EVALUATION_NOTE, "TEXT": "An evaluation note on [**2101-10-20**]."})
    for i, cat in enumerate(["Radiology", "Nursing/other", "ECG", "Physician "]):
        rows.append({"ROW_ID": 2000 + i, "SUBJECT_ID": 7, "HADM_ID": 9, "CHARTDATE": "2150-01-02", "CHARTTIME": "",
                     "STORETIME": "", "CATEGORY": cat, "DESCRIPTION": "", "CGID": "", "ISERROR": "",
                     "TEXT": f"{cat} text, \"quoted\"\nsecond line"})
    noteevents = root / "NOTEEVENTS.csv.gz"
    pd.DataFrame(rows).to_csv(noteevents, index=False)
    pairs = pd.DataFrame([
        {"ROW_ID": 1000, "Question": "What was the diagnosis?", "Answer": notes[0].facts["dx"],
         "Task": "Question Answering"},
        {"ROW_ID": 1001, "Question": "Expand the abbreviation.", "Answer": notes[1].facts["expansion"],
         "Task": "Abbreviation Expansion"},
        {"ROW_ID": 1001, "Question": "Summarize.", "Answer": "A summary.", "Task": "Summarization"},
        {"ROW_ID": 9999, "Question": "Missing note?", "Answer": "x", "Task": "Question Answering"},
        {"ROW_ID": 2000, "Question": "Radiology?", "Answer": "x", "Task": "Question Answering"},
        {"ROW_ID": 1007, "Question": "Held out?", "Answer": "x", "Task": "Paraphrasing"},
        {"ROW_ID": "", "Question": "No id", "Answer": "x", "Task": "Paraphrasing"},
    ])
    pairs_path = root / "mimiciii_discharge.csv"
    pairs.to_csv(pairs_path, index=False)
    exclude = root / "exclude.txt"
    exclude.write_text("# held out for evaluation\n1006\n1007\n\n")
    return noteevents, pairs_path, exclude, rows


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_mimic_preparation_streams_filters_joins_and_counts(tmp_path, no_network, capsys):
    noteevents, pairs, exclude, rows = _mimic_files(tmp_path)
    out = tmp_path / "out"
    rc = data.main(["mimic", "--noteevents", str(noteevents), "--pairs", str(pairs), "--out", str(out),
                    "--exclude-row-ids", str(exclude), "--chunksize", "3", "--no-progress", "--keep-deid-tags"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "NOTEEVENTS rows read: 13" in printed
    assert "discharge summaries: 9 (excluded 2, kept 7)" in printed
    assert f"excluded 2 evaluation note(s) of the 2 ROW_IDs in {exclude}" in printed
    assert "de-identification brackets: kept as MIMIC has them (--keep-deid-tags)" in printed
    assert "pairs read: 7; joined 3; left out: 2 ROW_ID missing, 1 not a discharge summary, 1 excluded" in printed
    notes = [json.loads(x) for x in (out / "notes.jsonl").read_text().splitlines()]
    by_id = {r["ROW_ID"]: r["TEXT"] for r in rows}
    assert [n["row_id"] for n in notes] == [1000, 1001, 1002, 1003, 1004, 1005, EVALUATION_NOTE]
    assert all(n["note"] == by_id[n["row_id"]] for n in notes)  # text as MIMIC has it, brackets included
    assert "[**Known lastname 123**]" in notes[0]["note"]
    pairs_out = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert [(p["row_id"], p["task"]) for p in pairs_out] == [
        (1000, "Question Answering"), (1001, "Abbreviation Expansion"), (1001, "Summarization")]
    assert pairs_out[1]["note"] == by_id[1001] and set(pairs_out[0]) == {"row_id", "note", "question", "answer",
                                                                          "task"}
    counts = json.loads((out / "counts.json").read_text())
    assert counts["tasks"] == {"Question Answering": 1, "Abbreviation Expansion": 1, "Summarization": 1}
    for name in ("notes.jsonl", "pairs.jsonl", "counts.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    assert not list(out.glob("*.partial"))


def test_mimic_defaults_exclude_the_reference_list_and_rewrite_deid_tags(tmp_path, capsys):
    """Without flags: the reference's 517 evaluation notes are left out and the brackets rewritten; --no-exclude
    trains on everything."""
    noteevents, pairs, _, rows = _mimic_files(tmp_path)
    by_id = {r["ROW_ID"]: r["TEXT"] for r in rows}
    assert EVALUATION_NOTE in read_row_ids(REFERENCE_EXCLUDE) and len(read_row_ids(REFERENCE_EXCLUDE)) == 517
    out = tmp_path / "default"
    assert data.main(["mimic", "--noteevents", str(noteevents), "--pairs", str(pairs), "--out", str(out),
                      "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "discharge summaries: 9 (excluded 1, kept 8)" in printed
    assert "excluded 1 evaluation note(s) of the 517 ROW_IDs in the reference's list" in printed
    assert "de-identification brackets: 8 rewritten as the reference did" in printed
    notes = {n["row_id"]: n["note"] for n in map(json.loads, (out / "notes.jsonl").read_text().splitlines())}
    assert EVALUATION_NOTE not in notes and 1007 in notes
    assert notes[1000] == convert_deid_tags(by_id[1000]).text and "Patient:  [Name] ," in notes[1000]
    assert not any("[**" in t for t in notes.values())
    pairs_out = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert pairs_out[0]["note"] == notes[1000]  # pairs carry the converted note too
    assert data.main(["mimic", "--noteevents", str(noteevents), "--pairs", str(pairs), "--out",
                      str(tmp_path / "all"), "--no-progress", "--no-exclude"]) == 0
    printed = capsys.readouterr().out
    assert "discharge summaries: 9 (excluded 0, kept 9)" in printed and "excluded none (--no-exclude)" in printed
    everything = {n["row_id"]: n["note"] for n in map(json.loads, (tmp_path / "all/notes.jsonl").read_text()
                                                       .splitlines())}
    assert everything[EVALUATION_NOTE] == "An evaluation note on  2101-10-20 ."


def test_mimic_outputs_train_as_they_are_with_match_released(tmp_path, init_dir):
    noteevents, pairs, exclude, _ = _mimic_files(tmp_path)
    out = tmp_path / "mimic"
    prepare_mimic(noteevents, pairs, out, exclude, chunksize=5, progress=False)
    pt = tmp_path / "pt"  # both stages as the released checkpoints were trained (double BOS; BOS pad and mask)
    assert pretrain.main(["--model_name_or_path", str(init_dir), "--data_path", str(out / "notes.jsonl"),
                          "--model_max_length", "64", "--output_dir", str(pt), "--max_steps", "1",
                          "--match-released", "--save_prepared_to", str(tmp_path / "blocks"), *CPU]) == 0
    blocks = datasets.load_from_disk(str(tmp_path / "blocks"))["input_ids"]
    assert blocks[0][:2] == [1, 1]
    ft = tmp_path / "ft"
    assert finetune.main(["--model_name_or_path", str(pt), "--data_path", str(out / "pairs.jsonl"),
                          "--model_max_length", "512", "--output_dir", str(ft), "--max_steps", "1",
                          "--match-released", *CPU]) == 0
    assert (ft / "model.safetensors").is_file()


def test_mimic_bad_inputs(tmp_path, capsys):
    noteevents, pairs, _, _ = _mimic_files(tmp_path)
    rc = data.main(["mimic", "--noteevents", str(tmp_path / "nope.csv"), "--pairs", str(pairs), "--out",
                    str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and "nope.csv: no such file" in capsys.readouterr().err
    bad_pairs = tmp_path / "bad.csv"
    bad_pairs.write_text("Question,Answer\nq,a\n")
    rc = data.main(["mimic", "--noteevents", str(noteevents), "--pairs", str(bad_pairs), "--out",
                    str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and "column 'ROW_ID' (for id) not found" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("ROW_ID,TEXT\n1,hello\n")
    rc = data.main(["mimic", "--noteevents", str(wrong), "--pairs", str(pairs), "--out", str(tmp_path / "o"),
                    "--no-progress"])
    assert rc == 2 and "not a NOTEEVENTS file (no CATEGORY column)" in capsys.readouterr().err


def test_hub_dataset_not_cached_offline_is_a_clear_cli_error(init_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    rc = finetune.main(["--model_name_or_path", str(init_dir), "--data_path",
                        "starmpcc/Asclepius-Synthetic-Clinical-Notes", "--split", "train", "--revision", "main",
                        "--output_dir", str(tmp_path / "o"), *CPU])
    err = capsys.readouterr().err
    assert rc == 2 and "starmpcc/Asclepius-Synthetic-Clinical-Notes (split train, revision main)" in err
    assert "not cached on this machine" in err
