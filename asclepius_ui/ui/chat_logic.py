"""The chat page's handlers as plain functions (state in, updates out), tested without a browser."""

from __future__ import annotations

import html
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import gradio as gr

from .. import phi_guard
from ..conversation import now_iso, snapshot, stats_line, with_history
from ..engines import GenerationSettings
from ..errors import UserError
from ..evidence import find_evidence, render_html
from ..tasks import by_label, missing_argument
from .common import error_box, safe_markdown

log = logging.getLogger(__name__)
KEEP = gr.update()  # an output left as it is

GREEDY, PAPER, CUSTOM = "greedy", "paper", "custom"
PRESET_CHOICES = [
    ("greedy: one best answer, streamed (interactive default)", GREEDY),
    ("paper: 5 beams with sampling, temperature 1, 400 new tokens (the authors' evaluation; not streamed)", PAPER),
    ("custom: the settings below", CUSTOM),
]
GUARD_HOLD, GUARD_SEND, GUARD_REDACT = "hold", "send", "redact"
GUARD_CHOICES = [("Do not send yet", GUARD_HOLD), ("Send this note as it is", GUARD_SEND),
                 ("Send a redacted copy", GUARD_REDACT)]


def internal_error(exc: BaseException) -> str:
    """An error box for a bug: an id the user can quote, the traceback in the server log."""
    ref = uuid.uuid4().hex[:8]
    log.exception("internal error %s", ref, exc_info=exc)
    return error_box(f"Internal error {ref}: this is a bug, not your input. The details are in the server log.")


def preset_settings(preset: str, max_new: float, sampling: bool, temperature: float, top_p: float, beams: float,
                    repetition: float) -> GenerationSettings:
    """Decoding settings for a preset; ``custom`` takes the sliders, ``greedy`` only their max new tokens."""
    if preset == PAPER:
        return GenerationSettings.from_preset(PAPER)
    if preset == CUSTOM:
        return GenerationSettings(max_new_tokens=int(max_new), do_sample=bool(sampling), temperature=float(temperature),
                                  top_p=float(top_p), num_beams=int(beams), repetition_penalty=float(repetition),
                                  preset=CUSTOM)
    return GenerationSettings.from_preset(GREEDY, max_new_tokens=int(max_new))


def streams(settings: GenerationSettings) -> bool:
    """Beam search cannot stream: the answer arrives when it is done."""
    return settings.streams


def budget_text(engine, note: str, instruction: str, max_new: float) -> str:
    """The live token count shown under the note."""
    b = engine.budget(engine.prompt(note or "", instruction or ""), int(max_new))
    if b is None:
        return (f"Token budget unknown: {engine.model_id} is served by a backend that cannot count tokens here "
                f"(context {engine.context_length}). Pass --tokenizer DIR to count them.")
    if not b.fits:
        return error_box(b.describe() + ". Lower max new tokens, shorten the note, or use “Truncate note to fit”.")
    return b.describe()


def do_truncate(engine, note: str, instruction: str, max_new: float, keep_choice: str) -> tuple[str, str, bool, str]:
    """(kept note, cut text, open the cut box, status)."""
    note = note or ""
    try:
        cut = engine.truncate_note(note, instruction or "", int(max_new),
                                   keep="end" if keep_choice == "Keep the end" else "start")
    except UserError as exc:
        return note, "", False, error_box(str(exc))
    if not cut.cut:
        return note, "", False, "The note already fits; nothing was cut."
    msg = f"Cut {cut.cut_tokens} tokens ({len(cut.cut)} characters) from the note; the removed text is shown below."
    return cut.kept, cut.cut, True, msg


@dataclass(frozen=True)
class Guarded:
    """What may be sent: the note to send (None: nothing may be sent yet), the message, and a record of it."""

    note: str | None
    message: str
    record: dict | None


def guard_note(engines: Iterable, note: str, choice: str | None) -> Guarded:
    """Apply the privacy guard when any of ``engines`` sends the prompt off this machine.

    Nothing is sent until the user confirms this very note (the choice resets when the note changes):
    as it is, or as a copy with every identifier the guard found replaced by its kind.
    """
    if not any(phi_guard.leaves_machine(e) for e in engines):
        return Guarded(note, "", None)
    findings = phi_guard.scan(note)
    found = phi_guard.summary(findings)
    if choice == GUARD_SEND:
        return Guarded(note, "", {"sent": "as is", "note_key": phi_guard.note_key(note), "found": len(findings)})
    if choice == GUARD_REDACT:
        return Guarded(phi_guard.redact(note, findings), "",
                       {"sent": "redacted", "note_key": phi_guard.note_key(note), "found": len(findings),
                        "kinds": sorted({f.kind for f in findings})})
    listed = "; ".join(f"{f.kind}: {f.text}" for f in findings[:12])
    return Guarded(None, error_box(f"Nothing was sent. This note would go to a remote model. {found} "
                                   + (f"({listed}) " if listed else "")
                                   + "Choose “Send this note as it is” or “Send a redacted copy” under "
                                     "“Privacy guard” to confirm this note."), None)


def guard_reset(note: str) -> dict:
    """A changed note needs a new confirmation: the guard goes back to "Do not send yet" and names this note."""
    key = phi_guard.note_key(note or "")[:8]
    return gr.update(value=GUARD_HOLD, info=f"Applies to this note only (fingerprint {key}).")


def with_heartbeat(updates: Iterator, every: float = 1.0) -> Iterator:
    """``updates`` consumed in a thread; yields each update, or None when ``every`` seconds pass without one."""
    q: queue.Queue = queue.Queue()
    end = object()

    def pump() -> None:
        try:
            for u in updates:
                q.put(u)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
        q.put(end)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            item = q.get(timeout=every)
        except queue.Empty:
            yield None
            continue
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def ask(ctx, rid: str | None, note: str, task_label: str, instr: str, use_history: bool, preset: str, mx, smp, temp,
        tp, bm, rep, guard_choice: str | None, chat: list, done: list) -> Iterator[tuple]:
    """Answer one instruction; yields (chat, turns, status, where-in-the-note HTML).

    ``rid`` is the id made when Ask was pressed: if Stop came while the request was still queued, nothing runs.
    """
    engine = ctx.engine
    chat, done = list(chat or []), list(done or [])
    rid, event = ctx.claim(rid)
    try:
        if event.is_set():  # leave the answers on screen as they are: this request never ran
            yield KEEP, KEEP, "Stopped while waiting in the queue: nothing was generated.", KEEP
            return
        yield from _answer(engine, event, note, task_label, instr, use_history, preset, mx, smp, temp, tp, bm, rep,
                           guard_choice, chat, done)
    except UserError as exc:
        yield chat, done, error_box(str(exc)), ""
    except Exception as exc:  # a bug: say so, log it, keep the page working
        yield chat, done, internal_error(exc), ""
    finally:
        event.set()  # ends generation if the page went away mid-stream
        ctx.finish(rid)


def _answer(engine, event, note, task_label, instr, use_history, preset, mx, smp, temp, tp, bm, rep, guard_choice,
            chat, done) -> Iterator[tuple]:
    if not (note or "").strip():
        yield chat, done, error_box("The note is empty: paste a discharge summary first."), ""
        return
    if not (instr or "").strip():
        yield chat, done, error_box("The instruction is empty: pick a task or type a question."), ""
        return
    t = by_label(task_label)
    if missing := missing_argument(t, instr):
        yield chat, done, error_box(missing), ""
        return
    settings = preset_settings(preset, mx, smp, temp, tp, bm, rep)
    settings.validate()
    guarded = guard_note([engine], note, guard_choice)
    if guarded.note is None:
        yield chat, done, guarded.message, ""
        return
    sent = guarded.note
    turns_so_far = [(d["instruction"], d["answer"]) for d in done]
    question = with_history(instr, turns_so_far) if use_history else instr
    prompt = engine.prompt(sent, question)
    b = engine.budget(prompt, settings.max_new_tokens)
    if b is not None and not b.fits:
        yield chat, done, error_box(b.describe() + ". Nothing was generated: lower max new tokens or use “Truncate "
                                    "note to fit” (it shows exactly what is cut)."), ""
        return
    chat += [{"role": "user", "content": safe_markdown(instr)}, {"role": "assistant", "content": ""}]
    started, t0 = now_iso(), time.perf_counter()
    live = streams(settings)
    name = settings.preset
    waiting = (f"Generating with the {name} preset… beam search cannot stream: the answer appears when it is done"
               if not live else "Generating…")
    yield chat, done, waiting, ""
    update = None
    try:
        for u in with_heartbeat(engine.stream(prompt, settings, event)):
            if u is None:
                yield chat, done, f"{waiting} ({time.perf_counter() - t0:.0f} s)", ""
                continue
            update = u
            chat[-1] = {"role": "assistant", "content": safe_markdown(u.text)}
            if not u.done:
                yield chat, done, f"Generating… {u.new_tokens} tokens", ""
    except UserError:
        del chat[-2:]
        raise
    line = stats_line(engine.model_id, engine.precision_label, update.new_tokens, update.seconds, update.stopped,
                      preset=name)
    chat[-1] = {"role": "assistant", "content": f"{safe_markdown(update.text)}\n\n<sub>{html.escape(line)}</sub>"}
    ev = find_evidence(sent, update.text)
    done.append(snapshot(note=sent, task=t.label, instruction=instr, prompt=prompt, answer=update.text,
                         model_id=engine.model_id, revision=engine.revision, precision=engine.precision_label,
                         template=engine.template, settings=settings.as_dict(), started_at=started,
                         finished_at=now_iso(), seconds=update.seconds, new_tokens=update.new_tokens,
                         stopped=update.stopped, preset=name, evidence=ev.as_dict(), guard=guarded.record))
    yield chat, done, ("Stopped. " if update.stopped else "") + line, render_html(sent, ev)


def regenerate(ctx, rid, note, task_label, instr, use_history, preset, mx, smp, temp, tp, bm, rep, guard_choice,
               chat, done) -> Iterator[tuple]:
    """Answer the last instruction again, replacing the last answer."""
    if not done:
        ctx.claim(rid)
        ctx.finish(rid or "")
        yield chat, done, error_box("Nothing to regenerate yet."), ""
        return
    last = done[-1]
    yield from ask(ctx, rid, note, last["task"], last["instruction"], use_history, preset, mx, smp, temp, tp, bm, rep,
                   guard_choice, list(chat)[:-2], done[:-1])


QUEUED = "Queued behind an answer being generated: Stop cancels this question before it runs."


def new_request(ctx) -> tuple[str, str]:
    """Made when Ask is pressed, before the generation event is queued: the request id, and a notice (naming the
    request) when it will wait behind another generation."""
    rid = ctx.new_request()[0]
    busy = ctx.max_concurrent <= 1 and ctx.busy()
    return rid, f'{QUEUED}<span class="request-id" data-request="{rid[:8]}"></span>' if busy else ""


def stop(ctx, rid: str | None) -> str | None:
    """Stop ``rid``; a request still waiting in the queue is cancelled and says so. None: leave the status."""
    if not rid or not ctx.stop(rid):
        return None
    if ctx.is_running(rid):
        return "Stopping…"
    return "Stopped while waiting in the queue: it will not run."
