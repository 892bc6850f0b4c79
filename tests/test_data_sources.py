"""asclepius_ui.data_sources: every kind of source, column mapping, and the offline hub message."""

from __future__ import annotations

import gzip
import json

import datasets
import pandas as pd
import pytest

from asclepius_ui import data_sources as ds
from asclepius_ui.errors import InputError

ROWS = [{"patient_id": 1, "note": "Note one.\nLine two, with a comma.", "question": "Q1?", "answer": "A1",
         "task": "Named Entity Recognition"},
        {"patient_id": 1, "note": "Note one.\nLine two, with a comma.", "question": "Q2?", "answer": "A2",
         "task": "Summarization"},
        {"patient_id": 2, "note": "Note two.", "question": "Q3?", "answer": "A3", "task": "Paraphrasing"}]


def _strings(rows):
    return [{k: str(v) for k, v in r.items()} for r in rows]


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.jsonl", "t.jsonl.gz", "t.json", "t.parquet", "t.tsv.bz2"])
def test_local_files_plain_and_compressed(tmp_path, name):
    df = pd.DataFrame(ROWS)
    path = tmp_path / name
    if ".csv" in name:
        df.to_csv(path, index=False)  # pandas compresses by suffix
    elif ".tsv" in name:
        df.to_csv(path, index=False, sep="\t")
    elif name.endswith(".json"):
        path.write_text(json.dumps(ROWS))
    elif ".jsonl" in name:
        text = "".join(json.dumps(r) + "\n" for r in ROWS)
        path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    else:
        df.to_parquet(path)
    rows = ds.read_records(str(path))
    expect = _strings(ROWS) if ".csv" in name or ".tsv" in name else ROWS  # CSV cells are text
    assert rows == expect


def test_datasets_folders_and_splits(tmp_path):
    d = datasets.Dataset.from_list(ROWS)
    d.save_to_disk(tmp_path / "saved")
    assert ds.kind_of(str(tmp_path / "saved")) == "saved"
    assert ds.read_records(str(tmp_path / "saved")) == ROWS
    dd = datasets.DatasetDict({"train": d, "test": d.select([2])})
    dd.save_to_disk(tmp_path / "dd")
    assert ds.read_records(str(tmp_path / "dd"), split="test") == [ROWS[2]]
    with pytest.raises(ds.SourceError, match="no split 'dev'; splits are train, test"):
        ds.read_records(str(tmp_path / "dd"), split="dev")
    # a folder of data files, as a downloaded hub repository is
    (tmp_path / "repo").mkdir()
    pd.DataFrame(ROWS).to_csv(tmp_path / "repo" / "synthetic.csv", index=False)
    assert ds.kind_of(str(tmp_path / "repo")) == "folder"
    assert [r["question"] for r in ds.read_records(str(tmp_path / "repo"))] == ["Q1?", "Q2?", "Q3?"]


def test_hub_id_offline_and_not_cached_says_so(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    assert ds.kind_of("starmpcc/Asclepius-Synthetic-Clinical-Notes") == "hub"
    with pytest.raises(ds.SourceError) as err:
        ds.read_records("starmpcc/Asclepius-Synthetic-Clinical-Notes", split="train", revision="main")
    msg = str(err.value)
    assert "not cached on this machine" in msg and "offline" in msg
    assert "starmpcc/Asclepius-Synthetic-Clinical-Notes (split train, revision main)" in msg
    assert isinstance(err.value, InputError)


def test_bad_sources_have_clear_messages(tmp_path):
    with pytest.raises(ds.SourceError, match="no such file or folder"):
        ds.read_records(str(tmp_path / "missing.csv"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ds.SourceError, match="expected a .csv"):
        ds.read_records(str(tmp_path / "x.txt"))
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ds.SourceError, match="line 2: not valid JSON"):
        ds.read_records(str(tmp_path / "bad.jsonl"))
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ds.SourceError, match="could not be read as csv .gz"):
        ds.read_records(str(tmp_path / "bad.csv.gz"))
    (tmp_path / "empty.csv").write_text("note,question\n")
    with pytest.raises(ds.SourceError, match="no rows"):
        ds.read_records(str(tmp_path / "empty.csv"))


def test_resolve_columns_released_names_aliases_and_flags():
    released = ["patient_id", "note", "question", "answer", "task"]
    assert ds.resolve_columns(released, ["note", "question", "answer"], optional=["task"]) == {
        "note": "note", "question": "question", "answer": "answer", "task": "task"}
    physionet = ["ROW_ID", "Question", "Answer", "Task"]
    assert ds.resolve_columns(physionet, ["question", "answer"], optional=["task"]) == {
        "question": "Question", "answer": "Answer", "task": "Task"}
    mine = ["summary", "ask", "reply"]
    got = ds.resolve_columns(mine, ["note", "question", "answer"], {"note": "summary", "question": "ask",
                                                                     "answer": "reply"})
    assert got == {"note": "summary", "question": "ask", "answer": "reply"}
    with pytest.raises(ds.SourceError, match=r"no question column .*--question-column.*Columns are: summary"):
        ds.resolve_columns(mine, ["question"])
    with pytest.raises(ds.SourceError, match="column 'nope' \\(for note\\) not found"):
        ds.resolve_columns(mine, ["note"], {"note": "nope"})
    rows = ds.canonical_rows([{"summary": "n", "ask": "q", "reply": "a", "x": 1}], got)
    assert rows == [{"note": "n", "question": "q", "answer": "a", "x": 1}]
    assert ds.unique_texts(["b", "a", "b", "", None, " ", "a"]) == ["b", "a"]


def test_eval_rows_and_generate_flags_read_every_source(tmp_path):
    from eval.generate import build_parser
    from eval.rows import read_rows

    path = tmp_path / "questions.parquet"
    pd.DataFrame(ROWS).to_parquet(path)
    assert read_rows(path, ("note", "question", "task")) == ROWS
    renamed = [{"summary": r["note"], "ask": r["question"], "kind": r["task"]} for r in ROWS]
    gz = tmp_path / "mine.jsonl.gz"
    gz.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in renamed).encode()))
    args = build_parser().parse_args(["--input", str(gz), "--out", "o.jsonl", "--model", "m", "--note-column",
                                      "summary", "--question-column", "ask", "--task-column", "kind",
                                      "--input-split", "test", "--revision", "abc"])
    opts = ds.source_options(args, prefix="input-")
    assert opts == {"split": "test", "revision": None, "columns": {"note": "summary", "question": "ask",
                                                                    "task": "kind"}}
    rows = read_rows(args.input, ("note", "question", "task"), **opts)
    assert [(r["note"], r["question"], r["task"]) for r in rows] == [(r["note"], r["question"], r["task"])
                                                                      for r in ROWS]
    # plain CSV/JSONL keep their own reader and messages
    with pytest.raises(InputError, match="Input file not found"):
        read_rows(tmp_path / "nope.jsonl")


def test_study_importer_reads_parquet_and_compressed_files(tmp_path):
    from asclepius_ui.studies import StudyFileError, parse_study_file

    items = [{"id": "a", "note": "N1", "question": "Q1", "task": "Summarization", "answer_x": "1", "answer_y": "2"},
             {"id": "b", "note": "N2", "question": "Q2", "task": "Paraphrasing", "answer_x": "3", "answer_y": "4"}]
    pd.DataFrame(items).to_parquet(tmp_path / "study.parquet")
    parsed = parse_study_file(tmp_path / "study.parquet")
    assert parsed.models == ["x", "y"] and [i.ext_id for i in parsed.items] == ["a", "b"]
    assert parsed.items[1].answers == {"x": "3", "y": "4"}
    pd.DataFrame(items).to_csv(tmp_path / "study.csv.gz", index=False)
    assert parse_study_file(tmp_path / "study.csv.gz").items[0].note == "N1"
    pd.DataFrame([{k: v for k, v in items[0].items() if k != "answer_y"}]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(StudyFileError, match="need at least two answer_<model> columns"):
        parse_study_file(tmp_path / "bad.parquet")
