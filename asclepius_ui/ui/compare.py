"""Blind A/B compare: two contenders answer the same note and instruction; names are shown only after the vote."""

from __future__ import annotations

import html
from collections.abc import Iterator

import gradio as gr

from ..conversation import now_iso, snapshot
from ..engines import GenerationError, GenerationSettings
from ..rating_logic import WINNERS, StorageError, assign_sides, draw_pair, new_uid
from ..tasks import by_label, missing_argument
from ..tokenization import default_max_new
from .context import AppContext
from .rating_widget import current_user, error_box, rubric_markdown, score_choices
from .task_picker import task_picker

NEED_TWO = (
    "Compare mode needs at least two contenders. Start the app with another local model "
    "(`--compare-model ID_OR_FOLDER`, repeatable) or a model served over an OpenAI-compatible API "
    "(`--remote-model NAME --remote-base-url URL`, key from `$OPENAI_API_KEY` or the variable named by "
    "`--remote-api-key-env`)."
)
HOW = ("Both contenders answer the same note and instruction. Which model is **Model A** (left) and which is "
       "**Model B** (right) is decided at random for every trial and shown only after your vote. The vote opens "
       "when both answers are finished. Rating each side 1-4 is optional.")


def _buttons(enabled: bool) -> list:
    return [gr.update(interactive=enabled) for _ in WINNERS]


def build(ctx: AppContext) -> None:
    engines = ctx.all_engines()
    with gr.Column(elem_id="compare-page"):
        if len(engines) < 2:
            gr.Markdown(NEED_TWO, elem_id="compare-need-two")
            return
        gr.Markdown(HOW)
        with gr.Row():
            with gr.Column(scale=5):
                note = gr.Textbox(label="Discharge summary", lines=10, elem_id="cmp-note")
            with gr.Column(scale=4):
                task, _arg, instruction = task_picker("cmp-")
                shortest = min(e.context_length for e in engines.values())
                max_new = gr.Slider(1, shortest, value=default_max_new(shortest), step=1, label="Max new tokens",
                                    elem_id="cmp-max-new")
                run = gr.Button("Answer with both", variant="primary", elem_id="cmp-run")
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Model A")
                ans_a = gr.Textbox(label="Model A", lines=10, interactive=False, elem_id="cmp-answer-a")
                score_a = gr.Radio(score_choices(), label="Rate Model A (optional)", elem_id="cmp-score-a")
            with gr.Column():
                gr.Markdown("### Model B")
                ans_b = gr.Textbox(label="Model B", lines=10, interactive=False, elem_id="cmp-answer-b")
                score_b = gr.Radio(score_choices(), label="Rate Model B (optional)", elem_id="cmp-score-b")
        with gr.Row():
            votes = [gr.Button(text, interactive=False, elem_id=f"cmp-vote-{key}") for key, text in WINNERS.items()]
        status = gr.Markdown(elem_id="cmp-status")
        reveal = gr.Markdown(elem_id="cmp-reveal")
        with gr.Accordion("Rubric", open=False):
            gr.Markdown(rubric_markdown())
    trial = gr.State(None)  # server-side only: the names never reach the browser before the vote

    def answer_both(note_text: str, task_label: str, instr: str, mx) -> Iterator:
        blank = ("", "", None, None)
        if not (note_text or "").strip() or not (instr or "").strip():
            yield *blank, error_box("Paste a note and give an instruction first."), "", None, *_buttons(False)
            return
        if missing := missing_argument(by_label(task_label), instr):
            yield *blank, error_box(missing), "", None, *_buttons(False)
            return
        settings = GenerationSettings(max_new_tokens=int(mx))
        first, second = draw_pair(list(engines))
        sides = assign_sides(first, second)
        names = {"A": sides.a, "B": sides.b}
        prompts, shown = {}, now_iso()
        for side, name in names.items():
            e = engines[name]
            prompts[side] = e.prompt(note_text, instr)
            b = e.budget(prompts[side], settings.max_new_tokens)
            if b is not None and not b.fits:
                yield (*blank, error_box(f"The note and instruction do not fit Model {side}'s context of "
                                         f"{e.context_length} tokens with {settings.max_new_tokens} new tokens: "
                                         "shorten the note or lower max new tokens."), "", None, *_buttons(False))
                return
        texts, snaps = {"A": "", "B": ""}, {}
        yield "", "", None, None, "Generating Model A…", "", None, *_buttons(False)
        for side, name in names.items():
            e = engines[name]
            rid, event = ctx.new_request()
            started, update = now_iso(), None
            try:
                for update in e.stream(prompts[side], settings, event):
                    texts[side] = update.text
                    yield (texts["A"], texts["B"], gr.update(), gr.update(),
                           f"Generating Model {side}… {update.new_tokens} tokens", "", None, *_buttons(False))
            except GenerationError as exc:
                yield texts["A"], texts["B"], None, None, error_box(f"Model {side}: {exc}"), "", None, \
                    *_buttons(False)
                return
            finally:
                event.set()
                ctx.finish(rid)
            snaps[side] = snapshot(note=note_text, task=by_label(task_label).label, instruction=instr,
                                   prompt=prompts[side], answer=update.text, model_id=name,
                                   revision=str(e.revision), precision=e.precision_label, template=e.template,
                                   settings=settings.as_dict(), started_at=started, finished_at=now_iso(),
                                   seconds=update.seconds, new_tokens=update.new_tokens, stopped=update.stopped)
        state = {"names": names, "swapped": sides.swapped, "snaps": snaps, "uid": new_uid(), "shown_at": shown,
                 "task": by_label(task_label).label, "voted": None, "settings": settings.as_dict()}
        yield texts["A"], texts["B"], None, None, "Both answers are ready: vote.", "", state, *_buttons(True)

    def vote(winner: str, state: dict | None, sa, sb, request: gr.Request):
        if not state:
            return error_box("Run a trial first."), "", state, *_buttons(False)
        if state.get("voted"):
            return f"Already saved as comparison #{state['voted']}.", gr.update(), state, *_buttons(False)
        a, b = state["snaps"]["A"], state["snaps"]["B"]
        side_ratings = {k: (v, "") for k, v in (("A", sa), ("B", sb)) if v}
        try:
            cid = ctx.storage.save_comparison(
                uid=state["uid"], rater=current_user(request), model_a=state["names"]["A"],
                model_b=state["names"]["B"], revision_a=a["model_revision"], revision_b=b["model_revision"],
                swapped=state["swapped"], winner=winner, note=a["note"], task=state["task"],
                instruction=a["instruction"], prompt=a["prompt"], answer_a=a["answer"], answer_b=b["answer"],
                settings=state["settings"], seconds_a=a["generation_seconds"], seconds_b=b["generation_seconds"],
                shown_at=state["shown_at"], side_ratings=side_ratings, snapshots=state["snaps"])
        except (StorageError, ValueError) as exc:
            return (error_box(f"Not saved: {exc} Your vote was not recorded; press it again to retry."),
                    "", state, *_buttons(True))
        state = dict(state, voted=cid)
        names = state["names"]
        text = (f'Model A was <b id="cmp-name-a">{html.escape(names["A"])}</b> · Model B was '
                f'<b id="cmp-name-b">{html.escape(names["B"])}</b>')
        return f"Saved comparison #{cid} ({WINNERS[winner]}).", text, state, *_buttons(False)

    run.click(answer_both, [note, task, instruction, max_new],
              [ans_a, ans_b, score_a, score_b, status, reveal, trial, *votes],
              concurrency_limit=max(1, ctx.max_concurrent), concurrency_id="generate")
    for key, button in zip(WINNERS, votes, strict=True):
        button.click(_voter(vote, key), [trial, score_a, score_b], [status, reveal, trial, *votes],
                     concurrency_limit=None)


def _voter(vote, key: str):
    def handler(state, sa, sb, request: gr.Request):
        return vote(key, state, sa, sb, request)

    return handler
