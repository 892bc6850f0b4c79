"""Reading the note ahead of the question (prefill on paste) on any page with a note box: the status line under the
note, the debounced note change, the poll while it reads, and the ``/prepare`` endpoint.

Chat reads into its engine; Compare into every contender that can (its line never names them: the comparison is
blind). Nothing waits for the reading: Ask goes first (``prefill.answering``).
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence

import gradio as gr

from .. import ask as flow
from .. import phi_guard, prefill
from ..engines.base import Engine
from ..errors import UserError
from ..prompts import TEMPLATES
from .common import KEEP, error_box, session

DEBOUNCE_S = 1.0  # a note is read once the clinician has stopped typing or pasting for this long
_latest_edit: dict[str, float] = {}  # session -> when its note last changed (the debounce)
_edits_lock = threading.Lock()


def readers(engines: Sequence[Engine]) -> list[Engine]:
    """The engines that can read a note ahead."""
    return [e for e in engines if e.capabilities.prefill]


def start(engines: Sequence[Engine], note: str, guard: str | None, session: str) -> tuple[str, bool]:
    """Start reading ``note`` for this session in each engine; (status line, keep polling). Nothing to read:
    ("", False)."""
    try:
        jobs = [job for e in engines if (job := flow.read_ahead(e, note or "", session, guard)) is not None]
    except UserError as exc:
        return error_box(str(exc)), False
    if not jobs:
        return "", False
    return html.escape(prefill.describe(jobs)), True


def note_changed(engines: Sequence[Engine], note: str, guard: str | None, session: str,
                 wait: float = DEBOUNCE_S) -> tuple[str | dict, bool]:
    """The note changed: read it once no newer change came within ``wait`` seconds (older calls leave the page
    as it is); (status line, keep polling)."""
    stamp = time.monotonic()
    with _edits_lock:
        _latest_edit[session] = stamp
    time.sleep(wait)
    with _edits_lock:
        if _latest_edit.get(session) != stamp:
            return KEEP, False
        _latest_edit.pop(session, None)
    return start(engines, note, guard, session)


def status(engines: Sequence[Engine], session: str) -> tuple[str, bool]:
    """The session's reading now, over its engines; (status line, keep polling)."""
    jobs = [job for e in engines if (job := prefill.prefiller(e).job(session)) is not None]
    if not jobs:
        return "", False
    return html.escape(prefill.describe(jobs)), not all(j.finished for j in jobs)


def prepare_note(engine: Engine, note: str, template: str | None, wait: float = 0.5) -> str:
    """``/prepare``: start reading ``note`` ahead of a question (each note its own session) and say where it is."""
    template = (template or "").strip() or engine.template
    if template not in TEMPLATES:
        return f"Unknown template {template!r}; choose one of {', '.join(TEMPLATES)}."
    if template != engine.template:
        return f"Nothing read: this server asks {engine.model_id} with the {engine.template} template."
    if not (note or "").strip():
        return "The note is empty: nothing to read."
    if phi_guard.leaves_machine(engine):
        return "Nothing read: this model is remote, and a note leaves the machine only when a question is asked."
    job = flow.read_ahead(engine, note, "api:" + phi_guard.note_key(note))
    if job is None:
        return f"The {engine.backend} backend cannot read a note ahead of the question (or the template asks first)."
    prefill.prefiller(engine).wait(job, wait)
    return job.describe()


def status_line(elem_id: str) -> gr.Markdown:
    """The line under a note box that says how far its reading is (empty until a note is pasted)."""
    return gr.Markdown("", elem_id=elem_id)


def wire(engines: Sequence[Engine], note: gr.Textbox, guard: gr.Radio, line: gr.Markdown, page: str = "") -> None:
    """A note pasted, typed or loaded (debounced) or confirmed for a remote model is read into each engine's cache
    in the background; ``line`` says how far, polled twice a second while it reads. ``page`` keeps one page's
    reading from replacing another's in the same browser session."""
    engines = readers(engines)
    if not engines:
        return
    poll = gr.Timer(0.5, active=False)
    private = {"api_visibility": "private"}

    def shown(text_and_more: tuple) -> tuple:
        text, more = text_and_more
        return text, gr.Timer(active=more)

    def on_note(n, g, request: gr.Request):
        return shown(note_changed(engines, n, g, page + session(request)))

    def on_guard(n, g, request: gr.Request):
        return shown(start(engines, n, g, page + session(request)))

    def on_tick(request: gr.Request):
        return shown(status(engines, page + session(request)))

    # Every change starts its own short wait (the debounce), so none queues behind another.
    note.change(on_note, [note, guard], [line, poll], show_progress="hidden", trigger_mode="multiple",
                concurrency_limit=None, **private)
    if any(phi_guard.leaves_machine(e) for e in engines):
        guard.input(on_guard, [note, guard], [line, poll], show_progress="hidden", concurrency_limit=None, **private)
    poll.tick(on_tick, None, [line, poll], show_progress="hidden", concurrency_limit=None, **private)
