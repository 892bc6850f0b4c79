"""Rate chat answers 1-4 with reason tags and a comment; also the small helpers every rating page shares."""

from __future__ import annotations

import gradio as gr

from ..errors import InputError, UserError
from ..rating_logic import REASON_TAGS, new_uid
from ..rubric import DESCRIPTIONS, RUBRIC_VERSION, SCORES, label
from ..signed import sign, verify
from ..text_input import finite_number
from .common import LOCAL_USER, current_user, error_box, is_admin, user_message  # noqa: F401 (shared helpers)
from .context import AppContext


def score_choices() -> list[tuple[str, int]]:
    return [(label(s), s) for s in sorted(SCORES)]


def rubric_markdown() -> str:
    lines = "\n".join(f"- **{s} {SCORES[s]}**: {DESCRIPTIONS[s]}" for s in sorted(SCORES))
    return f"**Rubric** (`{RUBRIC_VERSION}`)\n\n{lines}"


def _key(snap: dict) -> str:
    return f"{snap.get('started_at')}|{snap.get('finished_at')}|{snap.get('model_id')}"


def answer_choices(turns: list[dict]) -> list[tuple[str, int]]:
    def short(text: str, n: int = 50) -> str:
        text = " ".join((text or "").split())
        return text if len(text) <= n else text[: n - 1] + "…"

    return [(f"#{i + 1}: {short(t['instruction'], 40)} → {short(t['answer'])}", i) for i, t in enumerate(turns)]


def submit(storage, turns: list[dict], which, score, tags, comment: str, uid: str | None, saved: dict,
           rater: str) -> tuple[str, str, dict]:
    """Save one chat rating; returns (message, next uid, saved map). The form itself is never cleared here.

    The uid stays the same until a write succeeds, so a retry after an error cannot store twice; saving the
    same values again for the same answer is acknowledged without a new row; a different rating of an
    answer already rated is a new row that supersedes the previous one.
    """
    saved = dict(saved or {})
    uid = uid or new_uid()
    if not turns:
        return error_box("There is no answer to rate yet: ask something first."), uid, saved
    try:
        idx = len(turns) - 1 if which in (None, "") else int(finite_number(which, "The answer number", integer=True))
    except InputError as exc:
        return error_box(str(exc)), uid, saved
    if not 0 <= idx < len(turns):
        return error_box("Pick an answer to rate."), uid, saved
    snap = turns[idx]
    values = [score, sorted(tags or []), (comment or "").strip()]
    previous = saved.get(_key(snap))
    if previous and previous["values"] == values:
        return f"Already saved as rating #{previous['id']}.", uid, saved
    try:
        rid = storage.save_rating(snapshot=snap, score=score, rater=rater, uid=uid, tags=list(tags or []),
                                  comment=values[2], supersedes_id=previous["id"] if previous else None)
    except InputError as exc:
        return error_box(str(exc)), uid, saved
    except UserError as exc:
        return error_box(f"Not saved: {exc} Your rating is still in the form; press Save to retry."), uid, saved
    except Exception as exc:  # noqa: BLE001 - a bug: logged with an id, the form kept
        return user_message(exc, "rate"), uid, saved
    saved[_key(snap)] = {"id": rid, "values": values}
    note = f" (replaces #{previous['id']})" if previous else ""
    return f"Saved rating #{rid}{note} for answer #{idx + 1}.", new_uid(), saved


KEEP_SECRET = "page-state"  # the name of the database secret that signs the page's copy
ASK_AGAIN = ("This answer can no longer be rated (the page's copy of it is missing or was altered): ask again, "
             "then rate the new answer.")


def keep_state(storage, turns: list[dict], uid: str, saved: dict) -> dict:
    """What the page keeps in the browser so it can rate after a server restart: answers, retry key, saved map."""
    return sign({"turns": list(turns or []), "uid": uid, "saved": dict(saved or {})}, storage.secret(KEEP_SECRET))


def restore(storage, turns: list[dict], kept: object) -> tuple[list[dict], str | None, dict, bool]:
    """(turns, uid, saved, ok): the server's turns when it has them, else the page's signed copy.

    ``ok`` is False when the server has no answers and the page's copy is missing or not one the server signed.
    """
    kept = kept.model_dump() if hasattr(kept, "model_dump") else kept  # gr.JSON hands over a pydantic root model
    payload = verify(kept, storage.secret(KEEP_SECRET)) if kept else None
    if not isinstance(payload, dict):
        return list(turns or []), None, {}, bool(turns) or not kept
    return list(turns or payload.get("turns") or []), payload.get("uid"), dict(payload.get("saved") or {}), True


def save_from_page(storage, turns: list[dict], which, score, tags, comment: str, kept: object,
                   rater: str) -> tuple[str, dict]:
    """``submit`` with the state the page keeps: (message, new copy to keep)."""
    done, uid, saved, ok = restore(storage, turns, kept)
    if not ok:
        return error_box(ASK_AGAIN), kept
    message, uid, saved = submit(storage, done, which, score, tags, comment, uid, saved, rater)
    return message, keep_state(storage, done, uid, saved)


def build(ctx: AppContext, turns: gr.State, chatbot) -> None:
    """The rating form under the chat: which answer, score with the rubric, reason tags, comment, save.

    What is needed to rate (the answers' snapshots, the retry key, what was saved) is kept in the page, signed,
    so an answer on screen can still be rated after the server restarts, and a retry never stores twice.
    """
    st = ctx.storage
    with gr.Accordion("Rate an answer", open=True, elem_id="rate-box"):
        with gr.Row():
            with gr.Column(scale=3):
                which = gr.Dropdown(choices=[], value=None, label="Answer to rate (default: the latest)",
                                    elem_id="rate-which", allow_custom_value=True)  # checked in ``submit``
                score = gr.Radio(score_choices(), label="Score", elem_id="rate-score")
                tags = gr.CheckboxGroup(list(REASON_TAGS), label="Reasons (optional)", elem_id="rate-tags")
                comment = gr.Textbox(label="Comment (optional)", lines=2, elem_id="rate-comment")
                save = gr.Button("Save rating", variant="primary", elem_id="rate-save")
                status = gr.Markdown(elem_id="rate-status")
            with gr.Column(scale=2):
                gr.Markdown(rubric_markdown(), elem_id="rate-rubric")
    kept = gr.JSON(None, visible=False, elem_id="rate-kept")

    def on_turns(done: list[dict], k):
        choices = answer_choices(done or [])
        _, _, saved, _ = restore(st, [], k)
        return (gr.update(choices=choices, value=choices[-1][1] if choices else None),
                keep_state(st, done or [], new_uid(), saved))

    def on_save(done, idx, sc, tg, cm, k, request: gr.Request):
        return save_from_page(st, done or [], idx, sc, tg, cm, k, current_user(request))

    turns.change(on_turns, [turns, kept], [which, kept], show_progress="hidden")
    save.click(on_save, [turns, which, score, tags, comment, kept], [status, kept], queue=False,
               api_name="rate")
