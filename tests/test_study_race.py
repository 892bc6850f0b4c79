"""A study assignment is a state machine the database enforces: a skip and a submit of one item, from two tabs
served by two processes, never both win, and the coverage counter always equals the stored assignments."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter

import pytest

from asclepius_ui.storage import StaleAssignmentError, new_uid, open_storage
from asclepius_ui.studies import parse_study_text
from tests.pg import pg_server, pg_url, raw_execute  # noqa: F401
from tests.test_studies import study_jsonl

ROUNDS = 12


def _import(st, n: int, overlap: int = 1) -> int:
    return st.create_study("race", parse_study_text(study_jsonl(n), "jsonl"), overlap=overlap, created_by="admin")


def _submit(st, view: dict, rater: str = "bob") -> list[int]:
    return st.submit_item(assignment_id=view["assignment_id"], rater=rater, uid=new_uid(), seconds=1.0,
                          scores={a["answer_id"]: (3, "") for a in view["answers"]})


def _worker(url: str, action: str, jobs, results, barrier) -> None:
    """A second app process: for each view it is handed, wait for the other, then skip or submit it."""
    st = open_storage(url)
    try:
        while (view := jobs.get()) is not None:
            barrier.wait(timeout=60)
            try:
                if action == "skip":
                    st.skip_item(view["assignment_id"], "bob", seconds=1.0)
                else:
                    _submit(st, view)
                results.put((view["assignment_id"], action, "ok"))
            except StaleAssignmentError as exc:
                results.put((view["assignment_id"], action, str(exc)))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                results.put((view["assignment_id"], action, f"ERROR {exc!r}"))
    finally:
        st.close()


def _coverage_matches_rows(url: str) -> list[tuple]:
    """Items whose coverage counter differs from their open + done assignments (none, when consistent)."""
    return raw_execute(url, "SELECT i.id, i.coverage, (SELECT COUNT(*) FROM study_assignments a WHERE a.item_id = i.id "
                            "AND a.status IN ('open', 'done')) AS n FROM study_items i "
                            "WHERE i.coverage <> (SELECT COUNT(*) FROM study_assignments a WHERE a.item_id = i.id "
                            "AND a.status IN ('open', 'done'))")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_skip_and_submit_racing_from_two_processes(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    st = open_storage(url)
    sid = _import(st, ROUNDS)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    queues = {action: ctx.Queue() for action in ("skip", "submit")}
    procs = [ctx.Process(target=_worker, args=(url, action, q, results, barrier)) for action, q in queues.items()]
    for p in procs:
        p.start()
    try:
        outcomes = []
        for _ in range(ROUNDS):
            view = st.next_assignment(sid, "bob")
            for q in queues.values():
                q.put(view)
            got = {action: text for _, action, text in (results.get(timeout=120), results.get(timeout=120))}
            outcomes.append(got)
            assert not any(text.startswith("ERROR") for text in got.values()), got
            # Exactly one wins; the loser is told what happened.
            assert sorted(text == "ok" for text in got.values()) == [False, True], got
            loser = got["skip"] if got["submit"] == "ok" else got["submit"]
            assert ("already submitted" if got["submit"] == "ok" else "You skipped this item") in loser
    finally:
        for q in queues.values():
            q.put(None)
        for p in procs:
            p.join(60)
    assert _coverage_matches_rows(url) == []
    rated = Counter(r["item_id"] for r in st.study_ratings(sid) if r["label"] == "A")
    assert all(n == 1 for n in rated.values())  # overlap 1: never two raters' rows
    # Every skipped item is back in the pool for another rater, and only those.
    skipped = sum(1 for o in outcomes if o["skip"] == "ok")
    carol = []
    while (v := st.next_assignment(sid, "carol")) is not None:
        carol.append(v["item_id"])
        _submit(st, v, "carol")
    assert len(carol) == skipped and not set(carol) & set(rated)
    assert _coverage_matches_rows(url) == []
    st.close()


def test_a_stale_tab_cannot_submit_a_skipped_item(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    sid = _import(st, 2)
    view = st.next_assignment(sid, "bob")
    st.skip_item(view["assignment_id"], "bob")  # in one tab
    with pytest.raises(StaleAssignmentError, match="You skipped this item"):
        _submit(st, view)  # the old tab still shows it
    st.skip_item(view["assignment_id"], "bob")  # a repeated skip is harmless
    carol = st.next_assignment(sid, "carol")
    _submit(st, carol, "carol")
    other = st.next_assignment(sid, "carol")
    assert other is not None and other["item_id"] != carol["item_id"]
    _submit(st, other, "carol")
    with pytest.raises(StaleAssignmentError, match="already submitted"):
        st.skip_item(other["assignment_id"], "carol")
    _submit(st, other, "carol")  # re-rating a submitted item is allowed: it supersedes
    assert st.next_assignment(sid, "dave") is None  # overlap 1, both items rated once
    assert _coverage_matches_rows(f"sqlite:///{tmp_path / 'r.db'}") == []
    st.close()
