"""The chat page's handlers as plain functions (state in, updates out), tested without a browser."""

from __future__ import annotations

import html
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .. import ask as flow
from ..ask import GUARD_CHOICES, GUARD_HOLD, GUARD_REDACT, GUARD_SEND  # noqa: F401 - the page's choices
from ..claims import render_answer_html
from ..conversation import now_iso, stats_line
from ..engines import GenerationSettings
from ..errors import UserError
from ..evidence import render_html
from ..tasks import FREE, TASKS
from .common import KEEP, answer_notice, error_box, safe_markdown, user_message

GREEDY, PAPER, CUSTOM = "greedy", "paper", "custom"
PRESET_CHOICES = [
    ("greedy: one best answer, streamed (interactive default)", GREEDY),
    ("paper: 5 beams with sampling, temperature 1, 400 new tokens (the authors' evaluation; not streamed)", PAPER),
    ("custom: the settings below", CUSTOM),
]


_DEFAULT = GenerationSettings.from_preset(GREEDY)


@dataclass(frozen=True)
class AskForm:
    """What the chat page sends with Ask, by name (``ui/chat.py`` maps its components to these fields once)."""

    note: str = ""
    task: str = TASKS[FREE].label
    instruction: str = ""
    follow_up: bool = False
    preset: str = GREEDY
    guard: str | None = None
    # the sliders start at the greedy preset's values
    max_new_tokens: float = _DEFAULT.max_new_tokens
    sampling: bool = _DEFAULT.do_sample
    temperature: float = _DEFAULT.temperature
    top_p: float = _DEFAULT.top_p
    beams: float = _DEFAULT.num_beams
    repetition_penalty: float = _DEFAULT.repetition_penalty

    def settings(self) -> GenerationSettings:
        """Decoding settings for the preset; ``custom`` takes the sliders, ``greedy`` only their max new tokens."""
        if self.preset == PAPER:
            return GenerationSettings.from_preset(PAPER)
        if self.preset == CUSTOM:
            return GenerationSettings(max_new_tokens=self.max_new_tokens, do_sample=self.sampling,
                                      temperature=self.temperature, top_p=self.top_p, num_beams=self.beams,
                                      repetition_penalty=self.repetition_penalty, preset=CUSTOM)
        return GenerationSettings.from_preset(GREEDY, max_new_tokens=int(self.max_new_tokens))

    def request(self, done: list[dict]) -> flow.Request:
        """The request this form asks for; with follow-up ticked, the earlier answers go to the model."""
        history = tuple((d["instruction"], d["answer"]) for d in done) if self.follow_up else ()
        return flow.Request(note=self.note or "", instruction=self.instruction or "", task=self.task,
                            settings=self.settings(), history=history, guard=self.guard)


def budget_text(engine, note: str, instruction: str, max_new: float) -> str:
    """The live token count shown under the note."""
    b = engine.budget(engine.prompt(note or "", instruction or ""), int(max_new))
    if b is None:
        return (f"Token budget unknown: {engine.model_id} is served by a backend that cannot count tokens here "
                f"(context {engine.context_length if engine.context_known else 'unknown'}). Pass --tokenizer DIR to "
                "count them.")
    if not b.fits:
        return error_box(b.describe().rstrip(".") + ". Lower max new tokens, shorten the note, or use “Truncate note "
                         "to fit”.")
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


def ask(ctx, rid: str | None, form: AskForm, chat: list, done: list) -> Iterator[tuple]:
    """Answer one instruction; yields (chat, turns, status, where-in-the-note HTML).

    ``rid`` is the id made when Ask was pressed: if Stop came while the request was still queued, nothing runs.
    """
    chat, done = list(chat or []), list(done or [])
    rid, event = ctx.claim(rid)
    try:
        if event.is_set():  # leave the answers on screen as they are: this request never ran
            yield KEEP, KEEP, "Stopped while waiting in the queue: nothing was generated.", KEEP
            return
        yield from _answer(ctx.engine, event, form, chat, done)
    except Exception as exc:  # a UserError's own text; anything else is a bug: say so, log it, keep the page working
        yield chat, done, user_message(exc, "chat"), ""
    finally:
        event.set()  # ends generation if the page went away mid-stream
        ctx.finish(rid)


def _answer(engine, event, form: AskForm, chat, done) -> Iterator[tuple]:
    prepared = flow.prepare(engine, form.request(done))
    settings = prepared.request.settings
    chat += [{"role": "user", "content": safe_markdown(form.instruction)}, {"role": "assistant", "content": ""}]
    started, t0 = now_iso(), time.perf_counter()
    waiting = (f"Generating with the {settings.preset} preset… beam search cannot stream: the answer appears when "
               "it is done" if not settings.streams else "Generating…")
    yield chat, done, waiting, ""
    update = None
    try:
        for u in with_heartbeat(flow.stream(prepared, event)):
            if u is None:
                yield chat, done, "Stopping…" if event.is_set() else f"{waiting} ({time.perf_counter() - t0:.0f} s)", ""
                continue
            update = u
            chat[-1] = {"role": "assistant", "content": safe_markdown(u.text)}
            if not u.done:
                yield chat, done, "Stopping…" if event.is_set() else f"Generating… {u.new_tokens} tokens", ""
    except UserError:
        del chat[-2:]
        raise
    line = stats_line(engine.model_id, engine.precision_label, update.new_tokens, update.seconds, update.stopped,
                      preset=settings.preset)
    if update.first_token_s is not None:
        line += f" · first token after {update.first_token_s:.3f} s"
    answered = flow.record(prepared, update, started)
    notice = f"{answer_notice(update.notice)}\n\n" if update.notice else ""
    footer = f"{notice}<sub>{html.escape(line)}</sub>"
    chat[-1] = {"role": "assistant", "content": f"{checked_html(answered.check)}\n\n{footer}"}
    done.append(answered.snapshot)
    status = ("Stopped. " if update.stopped else "") + (f"⚠ {update.notice} " if update.notice else "") + line
    yield chat, done, status, render_html(prepared.note, answered.evidence)


def checked_html(check) -> str:
    """The finished answer with each claim the note does not support marked inline and the verdict under it (escaped
    HTML on one line, so the chat's Markdown keeps it one block)."""
    return render_answer_html(check).replace("\n", "<br>")


def regenerate(ctx, rid, form: AskForm, chat, done) -> Iterator[tuple]:
    """Answer the last instruction again, replacing the last answer."""
    if not done:
        ctx.claim(rid)
        ctx.finish(rid or "")
        yield chat, done, error_box("Nothing to regenerate yet."), ""
        return
    last = done[-1]
    again = AskForm(**{**form.__dict__, "task": last["task"], "instruction": last["instruction"]})
    yield from ask(ctx, rid, again, list(chat)[:-2], done[:-1])


