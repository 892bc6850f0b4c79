"""The ratings database on SQLite (a real file) and on a real PostgreSQL server: the same code, the same tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from asclepius_ui.rubric import RUBRIC_VERSION
from asclepius_ui.storage import FifoLock, StorageError, migrate, new_uid, open_storage
from tests.pg import pg_server, pg_url, raw_execute  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def snap(i: int = 0) -> dict:
    return dict(note=f"Note {i}: admitted with chest pain.", task="Question answering", instruction=f"Why {i}?",
                prompt=f"PROMPT {i}", answer=f"Because {i}.", model_id="tiny/model", model_revision="abc123",
                precision="fp32", template="asclepius", settings={"max_new_tokens": 8, "do_sample": False},
                started_at="2024-01-01T00:00:00.000+00:00", finished_at="2024-01-01T00:00:01.000+00:00",
                generation_seconds=1.0, new_tokens=8, stopped=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ratings.db'}"
    return request.getfixturevalue("pg_url")


def test_rating_stores_the_whole_snapshot_and_is_idempotent(db_url):
    st = open_storage(db_url)
    assert st.schema_revision() == "0004" and st.schema_differences() == []
    uid = new_uid()
    rid = st.save_rating(snapshot=snap(1), score=2, rater="alice", uid=uid, tags=["major omission"], comment="c")
    assert st.save_rating(snapshot=snap(1), score=2, rater="alice", uid=uid) == rid  # a retried submit
    [row] = st.ratings()
    assert row["id"] == rid and row["score"] == 2 and row["tags"] == ["major omission"] and row["comment"] == "c"
    s = snap(1)
    for key in ("note", "task", "instruction", "prompt", "answer", "model_id", "model_revision", "precision",
                "template", "settings", "started_at", "finished_at", "generation_seconds", "new_tokens"):
        assert row[key] == s[key], key
    assert row["rater"] == "alice" and row["rubric_version"] == RUBRIC_VERSION and row["created_at"]
    st.close()


def test_changed_rating_is_a_new_row_that_supersedes(db_url):
    st = open_storage(db_url)
    first = st.save_rating(snapshot=snap(), score=4, rater="a", uid=new_uid())
    second = st.save_rating(snapshot=snap(), score=1, rater="a", uid=new_uid(), supersedes_id=first,
                            tags=["incorrect"])
    assert [r["id"] for r in st.ratings()] == [second]
    everything = st.ratings(include_superseded=True)
    assert [(r["id"], r["score"], r["superseded"]) for r in everything] == [(first, 4, True), (second, 1, False)]
    assert everything[1]["supersedes_id"] == first
    st.close()


def test_bad_rating_is_refused_and_nothing_is_written(db_url):
    st = open_storage(db_url)
    for bad in (0, 5, None, "x"):
        with pytest.raises(ValueError):
            st.save_rating(snapshot=snap(), score=bad, rater="a", uid=new_uid())
    with pytest.raises(ValueError, match="tag"):
        st.save_rating(snapshot=snap(), score=3, rater="a", uid=new_uid(), tags=["boring"])
    assert st.ratings(include_superseded=True) == []
    st.close()


def test_fifty_concurrent_writers_lose_and_duplicate_nothing(db_url):
    st = open_storage(db_url)
    per_rater, errors = 12, []
    uids = {r: [new_uid() for _ in range(per_rater)] for r in range(50)}
    got: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def rater(r: int) -> None:
        try:
            barrier.wait()
            for i, uid in enumerate(uids[r]):
                rid = st.save_rating(snapshot=snap(i), score=1 + i % 4, rater=f"r{r}", uid=uid)
                again = st.save_rating(snapshot=snap(i), score=1 + i % 4, rater=f"r{r}", uid=uid)  # retry
                assert again == rid
                with lock:
                    got[uid] = rid
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=rater, args=(r,)) for r in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = st.ratings(include_superseded=True)
    assert len(rows) == 50 * per_rater == len(got)
    assert len({r["id"] for r in rows}) == len(rows) and len({r["uid"] for r in rows}) == len(rows)
    assert {r["uid"]: r["id"] for r in rows} == got
    st.close()


FIRST_RATING = ("INSERT INTO ratings (rater, model_id, model_revision, precision, template, task, note, instruction, "
                "prompt, answer, settings, started_at, finished_at, generation_seconds, new_tokens, score, tags, "
                "comment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
FIRST_COMPARISON = ("INSERT INTO comparisons (rater, model_a, model_b, winner, note, task, instruction, prompt, "
                    "answer_a, answer_b, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def test_database_from_the_first_schema_upgrades_with_nothing_lost(db_url):
    migrate(db_url, "0001")
    old = [("alice", "m1", "r1", "fp32", "asclepius", "QA", f"note {i}", f"q {i}", f"p {i}", f"a {i}",
            json.dumps({"max_new_tokens": 400}), "t0", "t1", 1.5, 7, 1 + i % 4, json.dumps(["other"]), f"c {i}",
            f"2024-01-0{i + 1}T00:00:00") for i in range(5)]
    raw_execute(db_url, FIRST_RATING, old)
    raw_execute(db_url, FIRST_COMPARISON, [("bob", "m1", "m2", "A", "n", "QA", "q", "p", "aa", "bb", "2024-02-01")])
    assert raw_execute(db_url, "SELECT version_num FROM alembic_version") == [("0001",)]

    st = open_storage(db_url)  # what a new release does on start
    assert st.schema_revision() == "0004" and st.schema_differences() == []
    rows = st.ratings(include_superseded=True)
    assert len(rows) == 5
    for r, o in zip(rows, old, strict=True):
        assert (r["rater"], r["model_id"], r["model_revision"], r["precision"], r["template"], r["task"], r["note"],
                r["instruction"], r["prompt"], r["answer"]) == o[:10]
        assert r["settings"] == {"max_new_tokens": 400} and r["tags"] == ["other"]
        assert (r["started_at"], r["finished_at"], r["generation_seconds"], r["new_tokens"], r["score"],
                r["comment"], r["created_at"]) == o[11:16] + o[17:]
        assert r["uid"] and r["source"] == "chat" and r["rubric_version"] == "asclepius-4pt-v1"
        assert r["supersedes_id"] is None
    assert len({r["uid"] for r in rows}) == 5
    [c] = st.comparisons()
    assert (c["rater"], c["model_a"], c["model_b"], c["winner"], c["winner_model"], c["answer_a"]) == \
        ("bob", "m1", "m2", "A", "m1", "aa")
    assert c["uid"] and c["swapped"] is False
    new = st.save_rating(snapshot=snap(), score=3, rater="alice", uid=new_uid(), supersedes_id=rows[0]["id"])
    assert new > rows[-1]["id"] and len(st.ratings()) == 5
    st.close()


CHILD = """
import sys
from asclepius_ui.storage import open_storage, new_uid
st = open_storage(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    rid = st.save_rating(snapshot={"note": "n", "instruction": "q", "prompt": "p", "answer": "a", "model_id": "m"},
                         score=1 + i % 4, rater="k", uid=new_uid())
    print(rid, flush=True)  # the acknowledgement a rater would see
    i += 1
"""


def test_killing_the_writer_loses_no_acknowledged_rating(db_url):
    open_storage(db_url).close()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, db_url], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"
    acked = []
    while len(acked) < 150:
        acked.append(int(proc.stdout.readline()))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    acked += [int(line) for line in proc.stdout.read().split() if line.strip()]  # acks still in the pipe
    st = open_storage(db_url)
    stored = {r["id"] for r in st.ratings(include_superseded=True)}
    assert set(acked) <= stored
    st.close()


def test_database_error_is_reported_and_a_retry_with_the_same_uid_succeeds(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    st = open_storage(url)
    raw_execute(url, "CREATE TRIGGER refuse BEFORE INSERT ON ratings BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    uid = new_uid()
    with pytest.raises(StorageError, match="disk says no"):
        st.save_rating(snapshot=snap(), score=3, rater="a", uid=uid)
    assert st.ratings() == []
    raw_execute(url, "DROP TRIGGER refuse")
    rid = st.save_rating(snapshot=snap(), score=3, rater="a", uid=uid)
    assert [r["id"] for r in st.ratings()] == [rid]
    st.close()


def test_bad_urls_give_clear_errors(tmp_path):
    with pytest.raises(StorageError, match="Not a database URL"):
        open_storage("not a url")
    with pytest.raises(StorageError, match="No database"):
        open_storage(f"sqlite:///{tmp_path / 'missing.db'}", create=False)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    open_storage(url).close()
    assert raw_execute(url, "PRAGMA journal_mode") == [("wal",)]
    st = open_storage(url)
    with st.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000
    st.close()


def test_write_lock_goes_to_the_waiter_first_in_line():
    """A writer that releases and asks again at once (an import, batch after batch) queues behind a waiting save."""
    lock, order = FifoLock(), []
    lock.acquire()

    def save() -> None:
        with lock:
            order.append("save")

    waiter = threading.Thread(target=save)
    waiter.start()
    while not lock._waiters:  # the save is queued
        time.sleep(0.001)
    lock.release()
    with lock:
        order.append("next batch")
    waiter.join()
    assert order == ["save", "next batch"]
