"""The reused torch worker threads: one after another a call gets the same thread, calls at once get their own, and a
call that raises leaves its worker serving the next."""

from __future__ import annotations

import threading

from asclepius_ui.engines import torch_threads


def _thread_of(fn=None) -> threading.Thread:
    box: dict = {}

    def work() -> None:
        box["thread"] = threading.current_thread()
        if fn is not None:
            fn()

    torch_threads.run(work).wait(5)
    return box["thread"]


def test_calls_one_after_another_reuse_one_thread():
    first = _thread_of()
    assert first is not threading.main_thread() and first.daemon
    assert _thread_of() is first
    assert _thread_of() is first


def test_calls_at_once_get_threads_of_their_own():
    release, started, seen = threading.Event(), threading.Barrier(3, timeout=5), []

    def hold() -> None:
        seen.append(threading.current_thread())
        started.wait()
        release.wait(5)

    done = [torch_threads.run(hold), torch_threads.run(hold)]
    started.wait()  # both are running at the same time
    release.set()
    assert all(d.wait(5) for d in done)
    assert seen[0] is not seen[1]


def test_a_call_that_raises_leaves_its_worker_serving():
    def boom() -> None:
        raise RuntimeError("a bug in the caller's work")

    thread = _thread_of(boom)
    assert thread.is_alive()
    assert _thread_of() is thread
