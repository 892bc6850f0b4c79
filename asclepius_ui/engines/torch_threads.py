"""Torch work (``generate``, a read-ahead) runs on long-lived daemon threads that are reused, the most recently
idle one first, instead of a fresh thread per call.

torch's CPU kernels run in an OpenMP team that belongs to the thread calling them, and a fresh thread gets a new
one: on this 2-core machine a 1,900-token note read in 128-token chunks took 1.44 s from a fresh thread against
1.11 s from a thread that had run torch before (one call of the whole note: 1.07 against 0.98 s). Reusing the last
idle thread keeps one warm team for the answers and the read-ahead alike.

    done = run(work)   # work() runs on a worker; done is set when it returns
    done.wait()
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
_lock = threading.Lock()
_idle: list[_Worker] = []  # the last one is the most recently used


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="torch", daemon=True)
        self.jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            fn, done = self.jobs.get()
            try:
                fn()
            except BaseException:  # noqa: BLE001 - callers report their own errors; the worker lives on
                log.exception("uncaught error in torch work")
            finally:
                with _lock:
                    _idle.append(self)  # idle before ``done``: the caller's next call gets this thread again
                done.set()


def run(fn: Callable[[], None]) -> threading.Event:
    """Start ``fn`` (which reports its own errors) on an idle worker, or a new one when all are busy."""
    with _lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
        worker.start()
    done = threading.Event()
    worker.jobs.put((fn, done))
    return done
