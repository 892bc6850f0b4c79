"""The chat page: lays out the components and wires them to ``chat_logic`` (the handlers live there)."""

from __future__ import annotations

import functools
import html

import gradio as gr

from .. import claims, phi_guard
from ..examples import example_label, example_notes
from ..registry import resolve
from ..tokenization import default_max_new
from . import chat_logic as logic
from . import common, rating_widget, read_ahead
from .common import escape_html
from .context import AppContext
from .task_picker import task_picker

DEMO_TEXT = (
    "**Demo model, not for clinical use.** A tiny model the project trains itself so the app works with no "
    "downloads{score}. Its answers are not medical advice. Real weights: `python app.py --model "
    "starmpcc/Asclepius-Llama3-8B` (or a downloaded folder; add `--load-in-8bit`/`--load-in-4bit` to save memory)."
)
# Ctrl+Enter (Cmd+Enter on a Mac) anywhere on the chat page presses Ask (served in page_script).
CTRL_ENTER = """
if (!window.__askKeys) {
  window.__askKeys = true;
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || !(e.ctrlKey || e.metaKey)) return;
    const page = document.querySelector('#chat-page');
    if (!page || !page.offsetParent || !page.contains(document.activeElement)) return;
    e.preventDefault();
    document.querySelector('#chat-ask')?.click();
  }, true);
}
"""


# The answers fill the window under the question at any height (all of it in view after Ask at 1366x768).
ANSWERS_HEIGHT = "max(240px, calc(100vh - 500px))"
NOT_CLINICAL = ("**Not for clinical use.** {name} is not a model this app knows (not a published Asclepius "
                "model): its answers have not been checked and are not medical advice.")


def model_info(ctx: AppContext) -> str:
    """The model line: every value comes from a flag or a file name, so each is escaped where it enters HTML."""
    e = ctx.engine
    context = e.context_length if getattr(e, "context_known", True) else "unknown"
    lines = [f"**Model** <code>{escape_html(e.model_id)}</code> · {escape_html(e.precision_label)} · template "
             f"<code>{escape_html(e.template)}</code> · context {escape_html(context)} tokens · revision "
             f"<code>{escape_html(e.revision)}</code>"]
    lines += [f'<div class="notice">{escape_html(n)}</div>' for n in e.notices]
    return "\n\n".join(lines)


def notice_banner(engine) -> dict:
    """The model's notices where they are read, above the note: "not for clinical use" for a model the registry
    does not know (the demo has its own banner), then each of the engine's notices (template, context...)."""
    parts = []
    if not engine.is_demo and not resolve(engine.model_id).known:
        parts.append(NOT_CLINICAL.format(name=f"`{html.escape(engine.model_id)}`"))
    parts += [f'<div class="notice">{html.escape(n)}</div>' for n in engine.notices]
    return gr.update(value="\n\n".join(parts), visible=bool(parts))


def demo_text(engine) -> str:
    from ..demo import demo_score

    score = demo_score(engine)
    return DEMO_TEXT.format(score=f"; {score}" if score else "")


def _handler(answer, ctx: AppContext, form_fields: dict):
    """``answer(ctx, rid, AskForm, chat, turns)`` as a Gradio handler: the form's values arrive in the order of
    ``form_fields`` (the one mapping of components to ``AskForm`` fields), and every update is also written to the
    server-side copy of the answers (the second output)."""
    names = list(form_fields)

    def run(rid, *values):
        *form_values, chat, turns = values
        form = logic.AskForm(**dict(zip(names, form_values, strict=True)))
        for shown, *rest in answer(ctx, rid, form, chat, turns):
            yield shown, shown, *rest
    return run


def build(ctx: AppContext) -> None:
    """Lay out the chat page and wire its events."""
    engine = ctx.engine
    examples = example_notes()
    remote = phi_guard.leaves_machine(engine)
    if remote:
        phi_guard.warm_up()
    claims.warm_up()  # the answer check's rules and drug list, loaded while the clinician reads
    with gr.Column(elem_id="chat-page"):
        # The note on the left (the model's banners above it); on the right the question and the answers, a column
        # that stays in view while the note side scrolls (theme.LAYOUT_CSS).
        with gr.Row(equal_height=False, elem_id="chat-work"):
            with gr.Column(scale=5, min_width=320, elem_id="chat-note-side"):
                if engine.is_demo:
                    gr.Markdown(demo_text(engine), elem_classes="demo-banner", elem_id="demo-banner")
                first = notice_banner(engine)
                banner = gr.Markdown(first["value"], visible=first["visible"], elem_id="model-notices",
                                     elem_classes="notice-banner")
                with gr.Accordion("Model", open=False):
                    info = gr.Markdown(model_info(ctx), elem_id="model-info")
                with gr.Row():
                    example = gr.Dropdown([(example_label(n, engine), n) for n in examples], label="Example note",
                                          value=None, scale=3, elem_id="chat-example")
                    load_example = gr.Button("Load example", scale=1, size="sm")
                note = gr.Textbox(label="Discharge summary", lines=9, max_lines=14, elem_id="chat-note",
                                  placeholder="Paste a discharge summary here.")
                budget = gr.Markdown(logic.budget_text(engine, "", "", default_max_new(engine.context_length)),
                                     elem_id="token-budget")
                reading = read_ahead.status_line("chat-prefill")  # "Reading the note… 60%"
                with gr.Row():
                    keep = gr.Radio(["Keep the start", "Keep the end"], value="Keep the start",
                                    label="When truncating", scale=2)
                    truncate = gr.Button("Truncate note to fit", scale=1)
                with gr.Accordion("Cut from the note", open=False) as cut_box:
                    cut_text = gr.Textbox(label="Text removed from the note", lines=6, interactive=False)
                with gr.Accordion("Where in the note (latest answer)", open=True, elem_id="chat-evidence-box"):
                    evidence = common.html_block(elem_id="chat-evidence")
            with gr.Column(scale=6, min_width=380, elem_id="chat-side"):
                task, _arg, instruction = task_picker("chat-")
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="chat-ask", scale=2, min_width=60)
                    stop = gr.Button("Stop", variant="stop", elem_id="chat-stop", scale=1, min_width=60)
                    regen = gr.Button("Regenerate", elem_id="chat-regen", scale=1, min_width=60)
                    clear = gr.Button("Clear", elem_id="chat-clear", scale=1, min_width=60)
                status = gr.Markdown("<sub>Ctrl+Enter in the page asks.</sub>", elem_id="chat-status")
                queued = gr.Markdown(elem_id="chat-queue")
                guard = gr.Radio(logic.GUARD_CHOICES, value=logic.GUARD_HOLD, visible=remote, elem_id="chat-guard",
                                 label="Privacy guard: this model is remote. Send this note?")
                if remote:
                    gr.Markdown(phi_guard.about_markdown(), elem_id="chat-guard-about")
                    with gr.Accordion("What “Send a redacted copy” sends", open=False):
                        preview = common.html_block(elem_id="chat-guard-preview")
                chatbot = gr.Chatbot(label="Answers", height=ANSWERS_HEIGHT, elem_id="answers",
                                     buttons=["copy", "copy_all"])
                if ctx.storage is not None:
                    rating_widget.build(ctx, turns := gr.State([]), chatbot)
                else:
                    turns = gr.State([])  # one rating snapshot per finished answer
                with gr.Accordion("Generation settings", open=False, elem_id="chat-settings"):
                    preset = gr.Radio(logic.PRESET_CHOICES, value=logic.GREEDY, label="Decoding preset",
                                      elem_id="chat-preset")
                    history = gr.Checkbox(False, label="Follow-up: give the model the earlier answers")
                    max_new = gr.Slider(1, max(1, engine.context_length), value=default_max_new(engine.context_length),
                                        step=1, label="Max new tokens", elem_id="max-new-tokens")
                    sampling = gr.Checkbox(False, label="Sampling (custom preset; off: greedy)")
                    temperature = gr.Slider(0.05, 2.0, value=0.7, step=0.05, label="Temperature")
                    top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
                    beams = gr.Slider(1, 8, value=1, step=1, label="Beams")
                    repetition = gr.Slider(0.8, 2.0, value=1.0, step=0.05, label="Repetition penalty")

    rid = gr.State(None)  # made when Ask is pressed, before the request is queued: Stop can cancel it there
    # The answers as last sent to the page, kept on the server: a question that waited in the queue adds to the
    # answers as they are when it runs (the Chatbot's own value would be the one from when Ask was pressed).
    shown = gr.State([])
    form_fields = {"note": note, "task": task, "instruction": instruction, "follow_up": history, "preset": preset,
                   "max_new_tokens": max_new, "sampling": sampling, "temperature": temperature, "top_p": top_p,
                   "beams": beams, "repetition_penalty": repetition, "guard": guard}
    gen_inputs = [rid, *form_fields.values(), shown, turns]
    gen_outputs = [chatbot, shown, turns, status, evidence]
    limit = max(1, ctx.max_concurrent)
    private = {"api_visibility": "private"}

    def wire(trigger, fn, api_name: str | None):
        # trigger_mode "multiple": a question asked while an answer is generating waits in the queue (and Stop can
        # cancel it there); Gradio's default ("once") would drop the second generation while the first is pending.
        made = trigger(functools.partial(common.new_request, ctx), None, [rid, queued], queue=False,
                       show_progress="hidden", trigger_mode="multiple", **private)
        visibility = {"api_name": api_name} if api_name else private
        made.then(_handler(fn, ctx, form_fields), gen_inputs, gen_outputs, concurrency_limit=limit,
                  concurrency_id="generate", trigger_mode="multiple", **visibility).then(
            lambda: "", None, queued, queue=False, **private).then(
            after_answer, [note, instruction, max_new], [budget, banner, info], queue=False, show_progress="hidden",
            **private)

    def after_answer(n, i, m):
        """What an answer may have taught the engine (a server's context learned from its refusal): the budget,
        the notices and the model line again."""
        return logic.budget_text(engine, n, i, m), notice_banner(engine), model_info(ctx)

    # On every page load too: what the engine learned since start-up (a server's context) is shown after a reload.
    gr.on(triggers=None, fn=lambda: (notice_banner(engine), model_info(ctx)), outputs=[banner, info],
          show_progress="hidden", **private)
    wire(ask.click, logic.ask, "ask")
    wire(instruction.submit, logic.ask, None)
    wire(regen.click, logic.regenerate, None)
    stop.click(lambda r: common.stop(ctx, r) or gr.update(), rid, status, queue=False, show_progress="hidden",
               **private)
    clear.click(lambda: ([], [], [], None, "", "", ""), None, [chatbot, shown, turns, rid, status, cut_text, evidence],
                **private)
    load_example.click(lambda name: examples.get(name, ""), example, note, **private)
    note.change(common.guard_reset, note, guard, show_progress="hidden", **private)  # confirm each note
    if remote:  # the redacted copy, diff-style, before anything is sent
        note.change(lambda n: phi_guard.diff_html(n or "", phi_guard.scan(n or "")), note, preview,
                    show_progress="hidden", trigger_mode="always_last", **private)
    for comp in (note, instruction, max_new):
        comp.change(functools.partial(logic.budget_text, engine), [note, instruction, max_new], budget,
                    show_progress="hidden", trigger_mode="always_last", **private)

    def on_truncate(n, i, m, k):
        kept, cut, open_box, msg = logic.do_truncate(engine, n, i, m, k)
        return kept, cut, gr.update(open=open_box) if open_box else gr.update(), msg

    truncate.click(on_truncate, [note, instruction, max_new, keep], [note, cut_text, cut_box, status], **private)
    read_ahead.wire([ctx.engine], note, guard, reading)
    if ctx.engine.capabilities.prefill:
        def prepare(note: str, template: str = "") -> str:
            """Start reading a note ahead of a question (template: empty for the model's own); returns where the
            reading is (call again to follow it). Ask later: the first answer starts at once."""
            return read_ahead.prepare_note(ctx.engine, note, template)

        gr.api(prepare, api_name="prepare", concurrency_limit=None)
