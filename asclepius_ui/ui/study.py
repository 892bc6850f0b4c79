"""The blinded expert study: each rater gets items in their own order, answers shuffled as A, B, C..., rated 1-4."""

from __future__ import annotations

import html
import time

import gradio as gr

from ..rating_logic import StorageError, new_uid
from ..studies import LABELS
from .context import AppContext
from .rating_widget import current_user, error_box, rubric_markdown, score_choices

INTRO = ("Rate every answer to the question about the note from 1 to 4 with the rubric below; the models' names "
         "are hidden and the answers are in a random order. You may skip an item. Your place is kept: close the "
         "browser and come back any time.")


def progress_html(p: dict | None) -> str:
    """A progress bar of the rater's items: rated of (rated + open + still available)."""
    if not p:
        return ""
    total = max(p["total"], 1)
    pct = round(100 * p["done"] / total)
    skipped = f", {p['skipped']} skipped" if p["skipped"] else ""
    return (f'<div class="study-progress" data-done="{p["done"]}" data-total="{p["total"]}" '
            f'data-skipped="{p["skipped"]}"><progress value="{p["done"]}" max="{total}" style="width:100%">'
            f'{pct}%</progress><div>{p["done"]} of {p["total"]} items rated ({pct}%)'
            f"{skipped}</div></div>")


def build(ctx: AppContext) -> None:
    st = ctx.storage
    with gr.Column(elem_id="study-page"):
        gr.Markdown(INTRO)
        with gr.Row():
            study = gr.Dropdown(choices=[], value=None, label="Study", elem_id="study-pick", scale=3)
            start = gr.Button("Start / resume", variant="primary", elem_id="study-start", scale=1)
        progress = gr.HTML(elem_id="study-progress")
        with gr.Column(visible=False) as item_box:
            header = gr.Markdown(elem_id="study-question")
            note = gr.Textbox(label="Discharge summary", lines=10, max_lines=30, interactive=False,
                              elem_id="study-note")
            slots = []
            for lab in LABELS:
                with gr.Group(visible=False) as group:
                    text = gr.Textbox(label=f"Answer {lab}", lines=3, max_lines=20, interactive=False,
                                      elem_id=f"study-answer-{lab}")
                    score = gr.Radio(score_choices(), label=f"Score for answer {lab}", elem_id=f"study-score-{lab}")
                    comment = gr.Textbox(label=f"Comment on answer {lab} (optional)", elem_id=f"study-comment-{lab}")
                slots.append((group, text, score, comment))
            with gr.Row():
                submit = gr.Button("Submit ratings", variant="primary", elem_id="study-submit")
                skip = gr.Button("Skip this item", elem_id="study-skip")
        status = gr.Markdown(elem_id="study-status")
        with gr.Accordion("Rubric", open=True):
            gr.Markdown(rubric_markdown())
    current = gr.State(None)  # {"view": assignment, "shown": monotonic seconds, "uid": idempotency key}
    slot_outputs = [c for slot in slots for c in slot]
    outputs = [item_box, header, note, *slot_outputs, current, progress, status]

    def show(view: dict | None, study_id, user: str, message: str = "") -> list:
        prog = st.rater_progress(int(study_id), user) if study_id is not None else None
        if view is None:
            done = "Nothing left for you in this study: thank you!" if study_id is not None else ""
            return [gr.update(visible=False), "", "",
                    *[u for _ in slots for u in (gr.update(visible=False), "", None, "")],
                    None, progress_html(prog), " ".join(x for x in (message, done) if x)]
        ups = []
        for i, _ in enumerate(slots):
            if i < len(view["answers"]):
                ans = view["answers"][i]
                ups += [gr.update(visible=True), ans["text"], None, ""]
            else:
                ups += [gr.update(visible=False), "", None, ""]
        task = f" · task: {html.escape(view['task'])}" if view["task"] else ""
        head = f"**Item {html.escape(view['ext_id'])}**{task}\n\n**Question:** {view['question']}"
        state = {"view": view, "shown": time.monotonic(), "uid": new_uid()}
        return [gr.update(visible=True), head, view["note"], *ups, state, progress_html(prog), message]

    def on_load(request: gr.Request):
        rows = st.studies()
        choices = [(f"{s['name']} ({s['items']} items)", s["id"]) for s in rows]
        return gr.update(choices=choices, value=choices[-1][1] if choices else None)

    def on_start(study_id, request: gr.Request):
        if study_id is None:
            return show(None, None, "", error_box("Pick a study first (an admin imports them on the Admin tab)."))
        user = current_user(request)
        try:
            view = st.next_assignment(int(study_id), user)
        except (StorageError, ValueError) as exc:
            return [gr.update()] * (len(outputs) - 1) + [error_box(str(exc))]
        return show(view, study_id, user)

    def on_submit(request: gr.Request, state, study_id, *values):
        if not state:
            return [gr.update()] * (len(outputs) - 1) + [error_box("Press Start first.")]
        user = current_user(request)
        view = state["view"]
        scores, missing = {}, []
        for i, ans in enumerate(view["answers"]):
            sc, cm = values[2 * i], values[2 * i + 1]
            if sc is None:
                missing.append(ans["label"])
            else:
                scores[ans["answer_id"]] = (sc, cm or "")
        if missing:
            return [gr.update()] * (len(outputs) - 1) + [
                error_box(f"Rate every answer before submitting (missing: {', '.join(missing)}), or skip.")]
        try:
            st.submit_item(assignment_id=view["assignment_id"], rater=user, uid=state["uid"], scores=scores,
                           seconds=time.monotonic() - state["shown"])
            nxt = st.next_assignment(int(study_id), user)
        except (StorageError, ValueError) as exc:  # keep the form as it is, to retry
            return [gr.update()] * (len(outputs) - 1) + [error_box(f"Not saved: {exc}")]
        return show(nxt, study_id, user, f"Saved item {html.escape(view['ext_id'])}.")

    def on_skip(state, study_id, request: gr.Request):
        if not state:
            return [gr.update()] * (len(outputs) - 1) + [error_box("Press Start first.")]
        user = current_user(request)
        try:
            st.skip_item(state["view"]["assignment_id"], user, seconds=time.monotonic() - state["shown"])
            nxt = st.next_assignment(int(study_id), user)
        except (StorageError, ValueError) as exc:
            return [gr.update()] * (len(outputs) - 1) + [error_box(str(exc))]
        return show(nxt, study_id, user, "Skipped.")

    form = [c for _, _, score, comment in slots for c in (score, comment)]
    gr.on(triggers=None, fn=on_load, inputs=None, outputs=study, show_progress="hidden")
    quick = dict(concurrency_limit=None, show_progress="hidden")  # short database calls
    start.click(on_start, study, outputs, **quick)
    submit.click(on_submit, [current, study, *form], outputs, **quick)
    skip.click(on_skip, [current, study], outputs, **quick)
