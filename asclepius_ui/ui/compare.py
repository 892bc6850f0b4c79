"""Blind A/B compare: lays out the page and wires it to ``compare_logic`` (the handlers live there)."""

from __future__ import annotations

import gradio as gr

from .. import phi_guard
from ..ask import GUARD_CHOICES, GUARD_HOLD
from ..rating_logic import WINNERS
from ..tokenization import default_max_new
from . import common, read_ahead
from . import compare_logic as logic
from .common import current_user
from .context import AppContext
from .rating_widget import rubric_markdown, score_choices
from .task_picker import task_picker

NEED_TWO = logic.NEED_TWO


def build(ctx: AppContext) -> None:
    engines = ctx.all_engines()
    remote = any(phi_guard.leaves_machine(e) for e in engines.values())
    with gr.Column(elem_id="compare-page"):
        if len(engines) < 2:
            gr.Markdown(NEED_TWO, elem_id="compare-need-two")
            return
        # What is asked on the left (note, task, Run); what comes back on the right (both answers, the scores and
        # the vote), so the vote is in view at laptop size (1366x768) once the answers are in.
        with gr.Row(equal_height=False, elem_id="cmp-work"):
            with gr.Column(scale=5, min_width=360):
                note = gr.Textbox(label="Discharge summary", lines=8, max_lines=12, elem_id="cmp-note")
                reading = read_ahead.status_line("cmp-prefill")  # both contenders read the note meanwhile
                task, _arg, instruction = task_picker("cmp-")
                shortest = min(e.context_length for e in engines.values())
                with gr.Row(equal_height=True):
                    max_new = gr.Slider(1, shortest, value=default_max_new(shortest), step=1,
                                        label="Max new tokens", elem_id="cmp-max-new", scale=3)
                    run = gr.Button("Answer with both", variant="primary", elem_id="cmp-run", scale=1)
                guard = gr.Radio(GUARD_CHOICES, value=GUARD_HOLD, visible=remote,
                                 elem_id="cmp-guard", label="Privacy guard: a contender is remote. Send this note?")
                if remote:
                    gr.Markdown(phi_guard.about_markdown(), elem_id="cmp-guard-about")
            with gr.Column(scale=6, min_width=480):
                with gr.Accordion("How the blind comparison works", open=False):
                    gr.Markdown(logic.HOW)
                status = gr.Markdown(elem_id="cmp-status")
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=220):
                        ans_a = gr.Textbox(label="Model A", lines=8, max_lines=14, interactive=False,
                                           elem_id="cmp-answer-a")
                        score_a = gr.Radio(score_choices(), label="Rate Model A (optional)", elem_id="cmp-score-a")
                    with gr.Column(min_width=220):
                        ans_b = gr.Textbox(label="Model B", lines=8, max_lines=14, interactive=False,
                                           elem_id="cmp-answer-b")
                        score_b = gr.Radio(score_choices(), label="Rate Model B (optional)", elem_id="cmp-score-b")
                with gr.Row():
                    votes = [gr.Button(text, interactive=False, elem_id=f"cmp-vote-{key}", min_width=80)
                             for key, text in WINNERS.items()]
                reveal = gr.Markdown(elem_id="cmp-reveal")
                with gr.Row():
                    with gr.Accordion("Where in the note (Model A)", open=False):
                        ev_a = common.html_block(elem_id="cmp-evidence-a")
                    with gr.Accordion("Where in the note (Model B)", open=False):
                        ev_b = common.html_block(elem_id="cmp-evidence-b")
                with gr.Accordion("Rubric", open=False):
                    gr.Markdown(rubric_markdown())
    trial = gr.State(None)  # server-side only: the names never reach the browser before the vote

    def on_run(note_text, task_label, instr, mx, choice):
        for a, b, clear, st, rv, state, ea, eb, enabled in logic.answer_both(ctx, note_text, task_label, instr, mx,
                                                                              choice):
            scores = [None, None] if clear else [gr.update(), gr.update()]
            yield (a, b, *scores, st, rv, state, ea, eb, *[gr.update(interactive=enabled) for _ in votes])

    def on_vote(winner, state, sa, sb, request: gr.Request):
        st, rv, state, enabled = logic.vote(ctx, winner, state, sa, sb, current_user(request))
        return (st, gr.update() if rv is None else rv, state, *[gr.update(interactive=enabled) for _ in votes])

    run.click(on_run, [note, task, instruction, max_new, guard],
              [ans_a, ans_b, score_a, score_b, status, reveal, trial, ev_a, ev_b, *votes],
              concurrency_limit=max(1, ctx.max_concurrent), concurrency_id="generate", api_name="compare")
    note.change(common.guard_reset, note, guard, show_progress="hidden", api_visibility="private")
    read_ahead.wire(list(engines.values()), note, guard, reading, page="compare:")
    winner = gr.Textbox(visible=False, label="Winner (A, B, tie or both_bad)")  # an input of the `vote` API
    for key, button in zip(WINNERS, votes, strict=True):
        button.click(lambda k=key: k, None, winner, queue=False, show_progress="hidden",
                     api_visibility="private").then(
            on_vote, [winner, trial, score_a, score_b], [status, reveal, trial, *votes], concurrency_limit=None,
            api_name="vote" if key == "A" else None, api_visibility="public" if key == "A" else "private")
