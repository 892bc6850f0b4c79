"""The compare page's handlers as plain functions (state in, updates out), tested without a browser."""

from __future__ import annotations

import html
from collections.abc import Iterator

from .. import ask as flow
from ..claims import render_answer_html
from ..conversation import now_iso
from ..demo import display_name
from ..engines import GenerationSettings
from ..errors import UserError
from ..evidence import render_html
from ..rating_logic import WINNERS, assign_sides, draw_pair, new_uid
from .common import answer_notice, error_box, user_message

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
        yield from _answer_both(ctx, flow.Request(note=note or "", instruction=instr or "", task=task_label,
                                                  settings=GenerationSettings(max_new_tokens=max_new),
                                                  guard=guard_choice))
    except Exception as exc:  # a UserError's own text; anything else is a bug: say so, log it, keep the page working
        yield _out(status=user_message(exc, "compare"))


def _answer_both(ctx, request: flow.Request) -> Iterator[tuple]:
    engines = ctx.all_engines()
    if len(engines) < 2:
        yield _out(status=error_box(NEED_TWO))
        return
    flow.check_request(request)
    guarded = flow.guard(engines.values(), request.note, request.guard)  # one confirmation for both contenders
    if guarded.note is None:
        yield _out(status=error_box(guarded.message))
        return
    first, second = draw_pair(list(engines))
    sides = assign_sides(first, second)
    names = {"A": sides.a, "B": sides.b}
    prepared, shown = {}, now_iso()
    for side, name in names.items():
        try:
            prepared[side] = flow.prepare(engines[name], request, guarded)
        except UserError as exc:
            yield _out(status=error_box(f"Model {side}: {exc}"))
            return
    texts, snaps, evs = {"A": "", "B": ""}, {}, {}
    yield _out(status="Generating Model A…")
    for side, name in names.items():
        rid, event = ctx.new_request()
        started, update = now_iso(), None
        try:
            for update in flow.stream(prepared[side], event):
                texts[side] = update.text
                yield _out(texts["A"], texts["B"], f"Generating Model {side}… {update.new_tokens} tokens",
                           clear_scores=False)
        except UserError as exc:
            yield _out(texts["A"], texts["B"], error_box(f"Model {side}: {exc}"))
            return
        finally:
            event.set()
            ctx.finish(rid)
        answered = flow.record(prepared[side], update, started, model_id=name)
        evs[side] = (answer_notice(update.notice) + render_answer_html(answered.check)
                     + render_html(prepared[side].note, answered.evidence))
        snaps[side] = answered.snapshot
    state = {"names": names, "swapped": sides.swapped, "snaps": snaps, "uid": new_uid(), "shown_at": shown,
             "task": request.task_label, "voted": None, "settings": request.settings.as_dict()}
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
