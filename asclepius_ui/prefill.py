"""Read notes ahead of the question: one background worker per engine processes pasted notes into its prefix cache,
and every Ask goes first.

    job = prefill.submit(engine, prefix, session)   # a note pasted (debounced), an example loaded, a study item shown
    job.describe()                                   # "Reading the note… 60%" / "Note ready: …"
    with prefill.answering(engine):                  # every Ask (``ask.stream`` does this)
        ...

The rules: an Ask from any session preempts a running prefill at its next chunk boundary (``answering`` returns
once the worker has stopped there; the chunks done stay in the cache and the Ask continues from them), and the
prefill resumes when no Ask runs. A newer note from the same session cancels that session's older job. At most
``MAX_QUEUED`` jobs wait (the oldest are dropped); what the caches hold is bounded by the engine (entries and bytes,
``Engine.cache_usage``). Engines that serve many requests at once (a server) are not paused by an Ask.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .engines.base import Engine
from .errors import UserError

log = logging.getLogger(__name__)

MAX_QUEUED = 8  # notes waiting to be read; older ones are dropped
MAX_REMEMBERED = 256  # sessions whose last job's state is kept for the status line

QUEUED, READING, READY, CANCELLED, FAILED = "queued", "reading", "ready", "cancelled", "failed"


@dataclass(eq=False)
class Job:
    """One note to read ahead for one session; ``state``, ``done`` and ``total`` change as the worker goes."""

    session: str
    prefix: str
    state: str = QUEUED
    done: int = 0
    total: int = 0
    error: str = ""
    seconds: float = 0.0  # time spent reading (all its turns)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def fraction(self) -> float:
        return 1.0 if self.state == READY else (self.done / self.total if self.total else 0.0)

    @property
    def finished(self) -> bool:
        return self.state in (READY, CANCELLED, FAILED)

    def describe(self) -> str:
        """The line the page shows."""
        if self.state == READY:
            return "Note ready: the first answer will start at once."
        if self.state == FAILED:
            return f"Could not read the note ahead ({self.error}); Ask still works."
        if self.state == CANCELLED:
            return ""
        if self.state == READING or self.done:
            return f"Reading the note… {round(100 * self.fraction)}%"
        return "Reading the note… (waiting for answers to finish)"


def describe(jobs: list[Job]) -> str:
    """One line for the same note read by several engines (Compare's contenders): ready when all are, a failure
    when one fails, else how far they are together (never which engine: a comparison is blind)."""
    live = [j for j in jobs if j.state != CANCELLED]
    if not live:
        return ""
    if len(live) == 1:
        return live[0].describe()
    failed = next((j for j in live if j.state == FAILED), None)
    if failed is not None:
        return failed.describe()
    if all(j.state == READY for j in live):
        return live[0].describe()
    if not any(j.state == READING or j.done for j in live):
        return live[0].describe()
    return f"Reading the note… {round(100 * sum(j.fraction for j in live) / len(live))}%"


class _Either:
    """Set when either event is: a job's own cancel or the engine-wide preempt."""

    def __init__(self, a: threading.Event, b: threading.Event):
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()


class Prefiller:
    """The background reader of one engine (its worker thread starts with the first job)."""

    def __init__(self, engine: Engine):
        self._engine = weakref.ref(engine)
        self.concurrent = engine.capabilities.concurrent
        self._cv = threading.Condition()
        self._queue: OrderedDict[str, Job] = OrderedDict()  # session -> its waiting job, oldest first
        self._last: OrderedDict[str, Job] = OrderedDict()  # session -> its latest job
        self._running: Job | None = None
        self._asking = 0
        self._preempt = threading.Event()
        self._thread: threading.Thread | None = None
        self.preemptions = self.completed = 0

    def submit(self, prefix: str, session: str) -> Job:
        """Queue ``prefix`` for ``session`` (replacing its older job); the same note while it is being read returns
        that job (a note read before is checked again: the cache may have let it go, and a kept one costs nothing)."""
        with self._cv:
            old = self._last.get(session)
            if old is not None and old.prefix == prefix and old.state in (QUEUED, READING):
                return old
            if old is not None and not old.finished:
                old.cancel.set()
                old.state = CANCELLED
            self._queue.pop(session, None)
            job = Job(session, prefix)
            self._queue[session] = job
            self._last[session] = job
            self._last.move_to_end(session)
            while len(self._last) > MAX_REMEMBERED:
                self._last.popitem(last=False)
            while len(self._queue) > MAX_QUEUED:
                _, dropped = self._queue.popitem(last=False)
                dropped.state = CANCELLED
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="prefill", daemon=True)
                self._thread.start()
            self._cv.notify_all()
        return job

    def job(self, session: str) -> Job | None:
        """The latest job of ``session``."""
        with self._cv:
            return self._last.get(session)

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Wait until ``job`` is finished (ready, cancelled or failed); False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not job.finished:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
        return True

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Hold prefills while an answer is made: a running one stops at its next chunk boundary (this waits for
        that), and none starts until every answer has finished."""
        if self.concurrent:
            yield
            return
        with self._cv:
            self._asking += 1
            self._preempt.set()
            while self._running is not None:
                self._cv.wait()
        try:
            yield
        finally:
            with self._cv:
                self._asking -= 1
                if not self._asking:
                    self._preempt.clear()
                    self._cv.notify_all()

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._queue) + (self._running is not None)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue or self._asking:
                    self._cv.wait()
                session, job = self._queue.popitem(last=False)
                self._running, job.state = job, READING
                self._cv.notify_all()
            engine = self._engine()
            if engine is None:
                return
            again = self._run(engine, job)
            del engine
            with self._cv:
                self._running = None
                if again and self._last.get(session) is job and session not in self._queue:
                    job.state = QUEUED
                    self._queue[session] = job
                    self._queue.move_to_end(session, last=False)  # resumes first once the answers are done
                    self.preemptions += 1
                self._cv.notify_all()

    def _run(self, engine: Engine, job: Job) -> bool:
        """Read ``job``'s note; True when an Ask stopped it (it resumes later)."""
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        t = time.perf_counter()
        try:
            result = engine.prefill(job.prefix, _Either(job.cancel, self._preempt), progress)
        except UserError as exc:
            job.state, job.error = FAILED, str(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker; the Ask path still works
            log.exception("prefill failed")
            job.state, job.error = FAILED, f"internal error: {type(exc).__name__}"
            return False
        finally:
            job.seconds += time.perf_counter() - t
        job.done, job.total = result.done, result.total
        if job.cancel.is_set():
            job.state = CANCELLED
            return False
        if result.complete:
            job.state = READY
            self.completed += 1
            return False
        if not self._preempt.is_set():  # stopped by nothing: this backend cannot read this note (never retried)
            job.state, job.error = FAILED, "nothing could be read"
            return False
        return True


_PREFILLERS: weakref.WeakKeyDictionary[Engine, Prefiller] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def prefiller(engine: Engine) -> Prefiller:
    """The background reader of ``engine`` (one per engine)."""
    with _LOCK:
        p = _PREFILLERS.get(engine)
        if p is None:
            p = _PREFILLERS[engine] = Prefiller(engine)
        return p


def submit(engine: Engine, prefix: str, session: str) -> Job:
    """Read ``prefix`` (a ``Prompt.prefix``) into ``engine``'s cache in the background for ``session``."""
    return prefiller(engine).submit(prefix, session)


@contextmanager
def answering(engine: Engine) -> Iterator[None]:
    """Every Ask runs inside this: prefills of ``engine`` pause (see ``Prefiller.answering``)."""
    if not engine.capabilities.prefill:
        yield
        return
    with prefiller(engine).answering():
        yield


def usage_line(engines: dict[str, Engine]) -> str:
    """One line per engine that keeps notes: entries and memory against their bounds, and the reader's queue."""
    lines = []
    for name, e in engines.items():
        u = e.cache_usage()
        if u is None:
            continue
        with _LOCK:
            p = _PREFILLERS.get(e)
        queue = f"; {p.pending} being read or waiting, {p.completed} read ahead so far" if p is not None else ""
        lines.append(f"Notes kept by {name}: {u.entries} of {u.max_entries}, {u.nbytes / 2**20:.1f} MiB of "
                     f"{u.max_bytes / 2**20:.0f} MiB{queue}.")
    return "\n\n".join(lines)
