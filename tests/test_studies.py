"""Study files, overlap-honouring assignment, per-rater order, stable answer shuffles, skip and resume."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from asclepius_ui.errors import StorageError
from asclepius_ui.storage import new_uid, open_storage
from asclepius_ui.studies import StudyFileError, label_answers, parse_study_file, parse_study_text
from tests.pg import pg_server, pg_url  # noqa: F401


def study_jsonl(n: int = 6, models=("asclepius", "gpt35")) -> str:
    return "\n".join(json.dumps({"id": f"i{k}", "note": f"Note {k}", "question": f"Question {k}?", "task": "QA",
                                 **{f"answer_{m}": f"{m} answer {k}" for m in models}}) for k in range(n)) + "\n"


def test_jsonl_and_csv_parse_to_the_same_items(tmp_path):
    j = tmp_path / "s.jsonl"
    j.write_text(study_jsonl(3, ("a", "b", "c")))
    c = tmp_path / "s.csv"
    c.write_text("id,note,question,task,answer_a,answer_b,answer_c\n" + "".join(
        f'i{k},"Note {k}","Question {k}?",QA,a answer {k},b answer {k},c answer {k}\n' for k in range(3)))
    pj, pc = parse_study_file(j), parse_study_file(c)
    assert pj.models == pc.models == ["a", "b", "c"]
    assert pj.items == pc.items and pj.items[1].answers == {"a": "a answer 1", "b": "b answer 1", "c": "c answer 1"}


@pytest.mark.parametrize("text,fmt,message", [
    ("note,question,answer_a,answer_b\nn,q,x,y\n", "csv", "missing column(s): task"),
    ("note,question,task,answer_a\nn,q,t,x\n", "csv", "at least two answer_<model> columns, found 1"),
    ("note,question,task,answer_a,answer_b\nn,q,t,x,y\n,,,,\n", "csv", "line 3: the row is empty"),
    ("note,question,task,answer_a,answer_b\nn,q,t,x,\n", "csv", "line 2: answer_b is empty"),
    ('{"note": "n", "question": "q", "task": "t", "answer_a": "x", "answer_b": "y"}\n{oops\n', "jsonl",
     "line 2: not valid JSON"),
    ("", "jsonl", "no items"),
])
def test_bad_study_files_are_refused_with_a_reason(text, fmt, message):
    with pytest.raises(StudyFileError) as err:
        parse_study_text(text, fmt)
    assert message in str(err.value)


def test_answer_labels_are_shuffled_per_rater_and_stable():
    ids = [11, 12, 13, 14]
    first = label_answers(1, "alice", 5, ids)
    assert first == label_answers(1, "alice", 5, list(reversed(ids)))  # same labels on every visit
    assert [lab for lab, _ in first] == ["A", "B", "C", "D"] and sorted(a for _, a in first) == ids
    orders = {tuple(a for _, a in label_answers(1, f"rater{r}", item, ids)) for r in range(5) for item in range(10)}
    assert len(orders) > 10  # genuinely shuffled across raters and items


def _import(st, n=6, overlap=2, name="s1") -> int:
    return st.create_study(name, parse_study_text(study_jsonl(n), "jsonl"), overlap=overlap, created_by="admin")


def _rate(st, view, rater, score=3) -> None:
    st.submit_item(assignment_id=view["assignment_id"], rater=rater, uid=new_uid(), seconds=2.5,
                   scores={a["answer_id"]: (score, "") for a in view["answers"]})


def test_overlap_skip_resume_and_progress(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    sid = _import(st, n=4, overlap=2)
    with pytest.raises(ValueError, match="already exists"):
        _import(st, n=4, overlap=2)
    v = st.next_assignment(sid, "alice")
    assert st.next_assignment(sid, "alice")["assignment_id"] == v["assignment_id"]  # resume: same item
    assert [a["label"] for a in v["answers"]] == ["A", "B"] and "model" not in v["answers"][0]
    with pytest.raises(ValueError, match="Rate every answer"):
        st.submit_item(assignment_id=v["assignment_id"], rater="alice", uid=new_uid(), seconds=1,
                       scores={v["answers"][0]["answer_id"]: (3, "")})
    with pytest.raises(ValueError, match="not assigned to you"):
        _rate(st, v, "bob")
    uid = new_uid()
    scores = {a["answer_id"]: (4, "fine") for a in v["answers"]}
    ids = st.submit_item(assignment_id=v["assignment_id"], rater="alice", uid=uid, scores=scores, seconds=3.0)
    assert st.submit_item(assignment_id=v["assignment_id"], rater="alice", uid=uid, scores=scores, seconds=3.0) == ids
    skipped = st.next_assignment(sid, "alice")
    st.skip_item(skipped["assignment_id"], "alice", seconds=1.0)
    while (v := st.next_assignment(sid, "alice")) is not None:
        _rate(st, v, "alice")
    assert st.rater_progress(sid, "alice") == {"done": 3, "skipped": 1, "open": 0, "available": 0, "total": 3}
    seen_bob = []
    while (v := st.next_assignment(sid, "bob")) is not None:
        seen_bob.append(v["item_id"])
        _rate(st, v, "bob", score=2)
    assert len(seen_bob) == 4  # bob gets every item, the one alice skipped included
    carol = st.next_assignment(sid, "carol")
    assert carol["item_id"] == skipped["item_id"]  # the only item still short of two raters
    _rate(st, carol, "carol")
    assert st.next_assignment(sid, "dave") is None  # every item has its two raters
    rows = st.study_ratings(sid)
    per_item = Counter(r["item_id"] for r in rows if r["model"] == "asclepius")
    assert set(per_item.values()) == {2}
    progress = {p["rater"]: p for p in st.study_progress(sid)}
    assert (progress["alice"]["done"], progress["alice"]["skipped"], progress["bob"]["done"]) == (3, 1, 4)
    assert progress["alice"]["seconds"] == pytest.approx(3.0 + 1.0 + 2 * 2.5)
    means = {m["model"]: m for m in st.model_means(sid)}
    assert means["asclepius"]["n"] == 8 and means["gpt35"]["mean"] == pytest.approx((4 + 2 * 3 + 4 * 2 + 3) / 8)
    st.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_raters_never_overshoot_the_overlap(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    st = open_storage(url)
    sid = _import(st, n=10, overlap=3)
    errors: list[str] = []
    barrier = threading.Barrier(12)

    def rater(name: str) -> None:
        try:
            barrier.wait()
            while (v := st.next_assignment(sid, name)) is not None:
                _rate(st, v, name)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=rater, args=(f"r{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    per_item = Counter((r["item_id"], r["rater"]) for r in st.study_ratings(sid))
    items = Counter(item for item, _ in per_item)
    assert len(items) == 10 and set(items.values()) == {3}  # exactly `overlap` raters per item
    assert set(per_item.values()) == {2}  # each rater rated both answers once
    st.close()


def test_import_is_all_or_nothing(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(ValueError, match="at least 1"):
        _import(st, overlap=0)
    assert st.studies() == []
    sid = _import(st, n=3, overlap=1)
    assert [(s["id"], s["items"], s["models"]) for s in st.studies()] == [(sid, 3, ["asclepius", "gpt35"])]
    st.close()


def test_imports_go_in_batches_refuse_duplicates_and_clean_up_on_failure(tmp_path):
    from asclepius_ui.storage import IMPORT_BATCH, DuplicateStudyError, open_storage
    from asclepius_ui.studies import ParsedStudy, StudyItemIn

    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    n = IMPORT_BATCH + IMPORT_BATCH // 2
    items = [StudyItemIn(note=f"n{k}", question="q", task="QA", answers={"x": "a", "y": "b"}, ext_id=f"i{k}")
             for k in range(n)]
    seen = []
    sid = st.create_study("big", ParsedStudy(["x", "y"], items), 2, "admin", progress=lambda d, t: seen.append(d))
    assert seen == [IMPORT_BATCH, n] and st.studies()[0]["items"] == n
    with pytest.raises(DuplicateStudyError, match="same content as the study 'big'"):
        st.create_study("big again", ParsedStudy(["x", "y"], items), 2, "admin")
    assert st.create_study("big again", ParsedStudy(["x", "y"], items), 2, "admin", allow_duplicate=True) > sid
    broken = items + [StudyItemIn(note="n", question="q", task="QA", answers={"x": "a", "y": "b"}, ext_id="i0")]
    with pytest.raises(StorageError):  # a later batch violates (study, ext_id) uniqueness
        st.create_study("broken", ParsedStudy(["x", "y"], broken), 2, "admin")
    assert [s["name"] for s in st.studies()] == ["big", "big again"]
    assert st.next_assignment(sid, "r")["ext_id"].startswith("i")
    st.close()
