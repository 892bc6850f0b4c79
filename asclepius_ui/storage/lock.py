"""A first-come-first-served lock for the writers of one process."""

from __future__ import annotations

import threading
from collections import deque


class FifoLock:
    """A lock handed to its waiters in arrival order.

    ``threading.Lock`` is not fair: a thread that releases it and asks again at once (an import writing batch after
    batch) usually gets it back before a waiting thread wakes, so a rating save could wait behind the whole import.
    Here ``release`` hands the lock straight to the longest waiter, so a save waits for at most the writes queued
    before it.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by ``release`` when this waiter is first in line: the lock is now ours

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # ownership passes on; ``_held`` stays true
            else:
                self._held = False

    def __enter__(self) -> FifoLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
