"""What every page of the app gets: the loaded engines and the app's settings."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AppContext:
    """Shared by the pages. ``engine`` answers in the chat; ``contenders`` are extra engines for compare mode.

    ``storage`` and ``users`` are set when ratings are enabled (``--db``, ``--auth``); with ``users``, a rater sees
    only ``rater_pages`` and an admin every page.
    """

    engine: Any
    contenders: dict[str, Any] = field(default_factory=dict)
    storage: Any = None
    users: Any = None
    db_url: str | None = None
    max_concurrent: int = 1
    rater_pages: frozenset[str] = frozenset({"study"})  # what a non-admin may use with --auth (``--rater-pages``)
    _stops: dict[str, threading.Event] = field(default_factory=dict, repr=False)
    _running: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def all_engines(self) -> dict[str, Any]:
        """The chat engine and the compare contenders by display name."""
        return {self.engine.model_id: self.engine, **self.contenders}

    def new_request(self) -> tuple[str, threading.Event]:
        """A fresh stop event for one generation request, with the id the page keeps to stop it."""
        rid = uuid.uuid4().hex
        event = threading.Event()
        with self._lock:
            self._stops[rid] = event
        return rid, event

    def claim(self, rid: str | None) -> tuple[str, threading.Event]:
        """The stop event made for ``rid`` when Ask was pressed (a new request if none), now marked running.

        The id exists before the generation event is queued, so Stop can cancel a request still waiting.
        """
        with self._lock:
            event = self._stops.get(rid or "")
            if event is not None:
                self._running.add(rid)
                return rid, event
        rid, event = self.new_request()
        with self._lock:
            self._running.add(rid)
        return rid, event

    def busy(self) -> bool:
        """Whether any generation is running now (a new request would wait in the queue)."""
        with self._lock:
            return bool(self._running)

    def is_running(self, rid: str | None) -> bool:
        with self._lock:
            return (rid or "") in self._running

    def stop(self, rid: str | None) -> bool:
        """Stop the request ``rid`` (only that one)."""
        with self._lock:
            event = self._stops.get(rid or "")
        if event is None:
            return False
        event.set()
        return True

    def finish(self, rid: str) -> None:
        with self._lock:
            self._stops.pop(rid, None)
            self._running.discard(rid)
