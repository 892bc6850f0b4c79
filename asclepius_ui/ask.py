"""One way from a question to an answer, shared by every page and CLI (chat, compare, batch, ``eval.generate``, the
benches): a ``Request`` built once from named fields, then small pure steps::

    request = Request(note, "List the discharge medications.", task="Free question", settings=settings)
    prepared = prepare(engine, request)          # checks, privacy guard, prompt tokenised once, fit checked once
    for update in stream(prepared, stop_event):  # the engine's one streaming generator
        ...
    answered = record(prepared, update, started_at)  # the rating snapshot, where in the note, the claim check

``prepare`` raises a ``UserError`` (``Refused`` or the engine's ``GenerationError``) whose text the page shows.
``read_ahead(engine, note, session)`` reads a note into the engine's cache while the question is chosen (``prefill``);
``stream`` and ``generate`` pause those reads while they answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from . import phi_guard, prefill
from .claims import Check, check_answer
from .conversation import now_iso, snapshot, with_history
from .engines.base import Engine, GenerationSettings, Prompt, StreamUpdate
from .errors import GenerationError, UserError
from .evidence import Evidence, find_evidence
from .prompts import prompt_parts
from .tasks import FREE, TASKS, missing_argument, task_key

# The privacy guard's choices for a note that would leave the machine.
GUARD_HOLD, GUARD_SEND, GUARD_REDACT = "hold", "send", "redact"
GUARD_CHOICES = [("Do not send yet", GUARD_HOLD), ("Send this note as it is", GUARD_SEND),
                 ("Send a redacted copy", GUARD_REDACT)]


class Refused(UserError):
    """A request that cannot be answered as asked; the text says why and what to do."""


@dataclass(frozen=True)
class Request:
    """One question about one note, as the user asked it.

    ``task`` is a task label or key (any other name is a free-form task, e.g. from a batch file); ``history`` holds
    earlier (question, answer) pairs to give the model (a follow-up, folded into the one instruction);
    ``guard`` is the user's privacy-guard choice for this note (``GUARD_SEND`` for a CLI pointed at an endpoint on
    purpose).
    """

    note: str
    instruction: str
    task: str = FREE
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    history: tuple[tuple[str, str], ...] = ()
    guard: str | None = None

    @property
    def task_label(self) -> str:
        key = task_key(self.task)
        return TASKS[key].label if key else self.task


@dataclass(frozen=True)
class Guarded:
    """What may be sent: the note to send (``None``: nothing may be sent yet), why not, and a record of it."""

    note: str | None
    message: str
    record: dict | None


@dataclass(frozen=True)
class Prepared:
    """A request ready for its engine: the note as it will be sent, the prompt (tokenised, fit checked) and what
    the privacy guard did."""

    engine: Engine
    request: Request
    note: str
    prompt: Prompt
    guard: dict | None = None


@dataclass(frozen=True)
class Answered:
    """A finished answer: the rating snapshot (everything that was judged), where in the note it is supported, and
    its claims checked against the note (a number, drug, side or negation the note does not say)."""

    snapshot: dict
    evidence: Evidence
    check: Check


def check_request(request: Request) -> None:
    """Raise ``Refused`` for a request no engine should see: an empty note or instruction, an unfilled argument."""
    if not request.note.strip():
        raise Refused("The note is empty: paste a discharge summary first.")
    if not request.instruction.strip():
        raise Refused("The instruction is empty: pick a task or type a question.")
    key = task_key(request.task)
    if key is not None and (missing := missing_argument(TASKS[key], request.instruction)):
        raise Refused(missing)


def guard(engines: Iterable[Engine], note: str, choice: str | None) -> Guarded:
    """Apply the privacy guard when any of ``engines`` sends the prompt off this machine.

    Nothing is sent until the user confirms this very note (the choice resets when the note changes): as it is, or
    as a copy with every identifier the guard found replaced by its kind.
    """
    if not any(phi_guard.leaves_machine(e) for e in engines):
        return Guarded(note, "", None)
    findings = phi_guard.scan(note)
    key = phi_guard.note_key(note)
    if choice == GUARD_SEND:
        return Guarded(note, "", {"sent": "as is", "note_key": key, "found": len(findings)})
    if choice == GUARD_REDACT:
        return Guarded(phi_guard.redact(note, findings), "",
                       {"sent": "redacted", "note_key": key, "found": len(findings),
                        "kinds": sorted({f.kind for f in findings})})
    listed = phi_guard.listing(findings)
    return Guarded(None, f"Nothing was sent. This note would go to a remote model. {phi_guard.summary(findings)} "
                         + (f"({listed}) " if listed else "")
                         + "Choose “Send this note as it is” or “Send a redacted copy” under “Privacy guard” to "
                           "confirm this note.", None)


def prepare(engine: Engine, request: Request, guarded: Guarded | None = None) -> Prepared:
    """``request`` ready for ``engine``: checked, guarded (``guarded`` when the caller guarded several engines at
    once), its prompt built and tokenised once and checked against the context once.

    Raises ``Refused`` (or the engine's ``GenerationError``/``UnsupportedError``) with the text to show.
    """
    check_request(request)
    engine.check_settings(request.settings)
    guarded = guarded or guard([engine], request.note, request.guard)
    if guarded.note is None:
        raise Refused(guarded.message)
    question = with_history(request.instruction, list(request.history)) if request.history else request.instruction
    try:
        prompt = engine.fit(engine.make_prompt(guarded.note, question), request.settings)
    except GenerationError as exc:
        raise Refused(f"Nothing was generated. {exc}") from exc
    return Prepared(engine, request, guarded.note, prompt, guarded.record)


def stream(prepared: Prepared, stop_event: threading.Event | None = None,
           min_interval: float = 0.05) -> Iterator[StreamUpdate]:
    """The growing answer to ``prepared`` (the engine's one streaming generator); the last update is ``done``.

    Notes being read ahead on this engine pause first (at their next chunk boundary); the times in the updates count
    from the call, that wait included."""
    t0 = time.perf_counter()
    with prefill.answering(prepared.engine):
        waited = time.perf_counter() - t0
        for u in prepared.engine.stream(prepared.prompt, prepared.request.settings, stop_event, min_interval):
            yield replace(u, seconds=u.seconds + waited,
                          first_token_s=None if u.first_token_s is None else u.first_token_s + waited)


def generate(prepared: Prepared, stop_event: threading.Event | None = None) -> StreamUpdate:
    """The whole answer to ``prepared`` at once."""
    *_, last = stream(prepared, stop_event, min_interval=float("inf"))
    return last


def read_ahead(engine: Engine, note: str, session: str, choice: str | None = None,
               template: str | None = None) -> prefill.Job | None:
    """Start reading ``note`` into ``engine``'s cache for ``session`` (a newer note of the session replaces it).

    ``None`` when there is nothing to read: an empty note, a backend without ``capabilities.prefill``, a template that
    asks before the note, or a remote engine whose privacy guard has not passed this note (``choice``: the user's
    guard choice; the redacted copy is what is read, as Ask would send it).
    """
    if not note.strip() or not engine.capabilities.prefill:
        return None
    guarded = guard([engine], note, choice)
    if guarded.note is None:
        return None
    _, prefix = prompt_parts(guarded.note, "", template or engine.template)
    return prefill.submit(engine, prefix, session) if prefix else None


def record(prepared: Prepared, result: StreamUpdate, started_at: str, model_id: str | None = None) -> Answered:
    """The rating snapshot of ``result`` (what was asked, of which model, how, and the answer) and its evidence."""
    e, r = prepared.engine, prepared.request
    ev = find_evidence(prepared.note, result.text)
    check = check_answer(prepared.note, result.text)
    snap = snapshot(note=prepared.note, task=r.task_label, instruction=r.instruction, prompt=prepared.prompt.text,
                    answer=result.text, model_id=model_id or e.model_id, revision=e.revision,
                    precision=e.precision_label, template=e.template, settings=r.settings.as_dict(),
                    started_at=started_at, finished_at=now_iso(), seconds=result.seconds,
                    new_tokens=result.new_tokens, stopped=result.stopped, preset=r.settings.preset,
                    evidence=ev.as_dict(), claims=check.as_dict(), guard=prepared.guard)
    return Answered(snap, ev, check)
