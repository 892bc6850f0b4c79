"""The compare page's handlers as plain functions (state in, updates out), tested without a browser."""

from __future__ import annotations

import html
from collections.abc import Iterator

from ..conversation import now_iso, snapshot
from ..demo import display_name
from ..engines import GenerationSettings
from ..errors import UserError
from ..evidence import find_evidence, render_html
from ..rating_logic import WINNERS, assign_sides, draw_pair, new_uid
from ..tasks import by_label, missing_argument
from .chat_logic import guard_note, internal_error
from .common import error_box

NEED_TWO = (
    "Compare mode needs at least two contenders. Start the app with another local model "
    "(`--compare-model ID_OR_FOLDER`, repeatable) or a model served over an OpenAI-compatible API "
    "(`--remote-model NAME --remote-base-url URL`, key from `$OPENAI_API_KEY` or the variable named by "
    "`--remote-api-key-env`)."
)
HOW = ("Both contenders answer the same note and instruction. Which model is **Model A** (left) and which is "
       "**Model B** (right) is decided at random for every trial and shown only after your vote. The vote opens "
       "when both answers are finished. Rating each side 1-4 is optional.")


def _out(a="", b="", status="", reveal="", state=None, ev_a="", ev_b="", votes=False, clear_scores=True) -> tuple:
    """(answer A, answer B, clear scores?, status, reveal, trial state, evidence A, evidence B, votes enabled)."""
    return a, b, clear_scores, status, reveal, state, ev_a, ev_b, votes


def answer_both(ctx, note: str, task_label: str, instr: str, max_new, guard_choice: str | None) -> Iterator[tuple]:
    """Draw two contenders, put them on random sides, stream both answers; yields ``_out`` tuples."""
    try:
        yield from _answer_both(ctx, note, task_label, instr, max_new, guard_choice)
    except UserError as exc:
        yield _out(status=error_box(str(exc)))
    except Exception as exc:  # a bug: say so, log it, keep the page working
        yield _out(status=internal_error(exc))


def _answer_both(ctx, note, task_label, instr, max_new, guard_choice) -> Iterator[tuple]:
    engines = ctx.all_engines()
    if len(engines) < 2:
        yield _out(status=error_box(NEED_TWO))
        return
    if not (note or "").strip() or not (instr or "").strip():
        yield _out(status=error_box("Paste a note and give an instruction first."))
        return
    if missing := missing_argument(by_label(task_label), instr):
        yield _out(status=error_box(missing))
        return
    guarded = guard_note(engines.values(), note, guard_choice)
    if guarded.note is None:
        yield _out(status=guarded.message)
        return
    sent = guarded.note
    settings = GenerationSettings(max_new_tokens=int(max_new))
    first, second = draw_pair(list(engines))
    sides = assign_sides(first, second)
    names = {"A": sides.a, "B": sides.b}
    prompts, shown = {}, now_iso()
    for side, name in names.items():
        e = engines[name]
        prompts[side] = e.prompt(sent, instr)
        b = e.budget(prompts[side], settings.max_new_tokens)
        if b is not None and not b.fits:
            yield _out(status=error_box(f"The note and instruction do not fit Model {side}'s context of "
                                        f"{e.context_length} tokens with {settings.max_new_tokens} new tokens: "
                                        "shorten the note or lower max new tokens."))
            return
    texts, snaps, evs = {"A": "", "B": ""}, {}, {}
    yield _out(status="Generating Model A…")
    for side, name in names.items():
        e = engines[name]
        rid, event = ctx.new_request()
        started, update = now_iso(), None
        try:
            for update in e.stream(prompts[side], settings, event):
                texts[side] = update.text
                yield _out(texts["A"], texts["B"], f"Generating Model {side}… {update.new_tokens} tokens",
                           clear_scores=False)
        except UserError as exc:
            yield _out(texts["A"], texts["B"], error_box(f"Model {side}: {exc}"))
            return
        finally:
            event.set()
            ctx.finish(rid)
        ev = find_evidence(sent, update.text)
        evs[side] = render_html(sent, ev)
        snaps[side] = snapshot(note=sent, task=by_label(task_label).label, instruction=instr, prompt=prompts[side],
                               answer=update.text, model_id=name, revision=e.revision, precision=e.precision_label,
                               template=e.template, settings=settings.as_dict(), started_at=started,
                               finished_at=now_iso(), seconds=update.seconds, new_tokens=update.new_tokens,
                               stopped=update.stopped, evidence=ev.as_dict(), guard=guarded.record)
    state = {"names": names, "swapped": sides.swapped, "snaps": snaps, "uid": new_uid(), "shown_at": shown,
             "task": by_label(task_label).label, "voted": None, "settings": settings.as_dict()}
    yield _out(texts["A"], texts["B"], "Both answers are ready: vote.", "", state, evs["A"], evs["B"], True,
               clear_scores=False)


def vote(ctx, winner: str, state: dict | None, score_a, score_b, rater: str) -> tuple[str, str, dict | None, bool]:
    """Save the vote (and optional side ratings); returns (status, reveal, state, votes still enabled)."""
    if not state:
        return error_box("Run a trial first."), "", state, False
    if state.get("voted"):
        return f"Already saved as comparison #{state['voted']}.", None, state, False
    a, b = state["snaps"]["A"], state["snaps"]["B"]
    side_ratings = {k: (v, "") for k, v in (("A", score_a), ("B", score_b)) if v}
    try:
        cid = ctx.storage.save_comparison(
            uid=state["uid"], rater=rater, model_a=state["names"]["A"], model_b=state["names"]["B"],
            revision_a=a["model_revision"], revision_b=b["model_revision"], swapped=state["swapped"], winner=winner,
            note=a["note"], task=state["task"], instruction=a["instruction"], prompt=a["prompt"],
            answer_a=a["answer"], answer_b=b["answer"], settings=state["settings"],
            seconds_a=a["generation_seconds"], seconds_b=b["generation_seconds"], shown_at=state["shown_at"],
            side_ratings=side_ratings, snapshots=state["snaps"])
    except UserError as exc:
        return error_box(f"Not saved: {exc} Your vote was not recorded; press it again to retry."), "", state, True
    state = dict(state, voted=cid)
    engines = ctx.all_engines()
    shown = {s: display_name(n, engines[n]) if n in engines else n for s, n in state["names"].items()}
    text = (f'Model A was <b id="cmp-name-a">{html.escape(shown["A"])}</b> · Model B was '
            f'<b id="cmp-name-b">{html.escape(shown["B"])}</b>')
    return f"Saved comparison #{cid} ({WINNERS[winner]}).", text, state, False
