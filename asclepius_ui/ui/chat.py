"""The chat page: paste a note, pick a task, ask; streamed answers with their cost, stop, regenerate."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from ..conversation import now_iso, snapshot, stats_line, with_history
from ..engines import GenerationError, GenerationSettings
from ..errors import UserError
from ..examples import example_notes
from ..tasks import by_label, missing_argument
from ..tokenization import default_max_new
from . import rating_widget
from .common import safe_markdown
from .context import AppContext
from .task_picker import task_picker

DEMO_TEXT = (
    "**Demo model, not for clinical use.** This is a tiny model the project trains itself so the app works "
    "with no downloads; its answers are not medical advice. To load real Asclepius weights, run "
    "`python app.py --model starmpcc/Asclepius-Llama3-8B` (or another variant) on a connected machine, or "
    "`python app.py --model /path/to/Asclepius-7B` for a downloaded folder; add `--load-in-8bit` or "
    "`--load-in-4bit` to save memory."
)


def _error(text: str) -> str:
    return f'<div class="error-box">{text}</div>' if text else ""


def model_info(ctx: AppContext) -> str:
    e = ctx.engine
    lines = [f"**Model** `{e.model_id}` · {e.precision_label} · template `{e.template}` · "
             f"context {e.context_length} tokens · revision `{e.revision}`"]
    lines += [f'<div class="notice">{n}</div>' for n in e.notices]
    return "\n\n".join(lines)


def settings_from(max_new: float, sampling: bool, temperature: float, top_p: float, beams: float,
                  repetition: float) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=int(max_new), do_sample=bool(sampling), temperature=float(temperature),
                              top_p=float(top_p), num_beams=int(beams), repetition_penalty=float(repetition))


def budget_text(ctx: AppContext, note: str, instruction: str, max_new: float) -> str:
    """The live token count shown under the note."""
    e = ctx.engine
    b = e.budget(e.prompt(note or "", instruction or ""), int(max_new))
    if b is None:
        return (f"Token budget unknown: {e.model_id} is served by a backend that cannot count tokens here "
                f"(context {e.context_length}). Pass --tokenizer DIR to count them.")
    text = b.describe()
    if not b.fits:
        return _error(text + ". Lower max new tokens, shorten the note, or use “Truncate note to fit”.")
    return text


def build(ctx: AppContext) -> None:
    """Lay out the chat page and wire its events."""
    engine = ctx.engine
    examples = example_notes()
    if engine.is_demo:
        gr.Markdown(DEMO_TEXT, elem_classes="demo-banner", elem_id="demo-banner")
    gr.Markdown(model_info(ctx), elem_id="model-info")

    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row():
                example = gr.Dropdown(list(examples), label="Example note", value=None, scale=3)
                load_example = gr.Button("Load example", scale=1)
            note = gr.Textbox(label="Discharge summary", lines=16, max_lines=40,
                              placeholder="Paste a discharge summary here.")
            budget = gr.Markdown(budget_text(ctx, "", "", default_max_new(engine.context_length)),
                                 elem_id="token-budget")
            with gr.Row():
                keep = gr.Radio(["Keep the start", "Keep the end"], value="Keep the start", label="When truncating",
                                scale=2)
                truncate = gr.Button("Truncate note to fit", scale=1)
            with gr.Accordion("Cut from the note", open=False) as cut_box:
                cut_text = gr.Textbox(label="Text removed from the note", lines=6, interactive=False)
        with gr.Column(scale=6):
            chatbot = gr.Chatbot(label="Answers", height=460, elem_id="answers", buttons=["copy", "copy_all"])
            task, _arg, instruction = task_picker("chat-")
            history = gr.Checkbox(False, label="Follow-up: give the model the earlier answers")
            with gr.Row():
                ask = gr.Button("Ask", variant="primary")
                stop = gr.Button("Stop", variant="stop")
                regen = gr.Button("Regenerate")
                clear = gr.Button("Clear")
            status = gr.Markdown(elem_id="chat-status")
            with gr.Accordion("Generation settings", open=False):
                max_new = gr.Slider(1, max(1, engine.context_length), value=default_max_new(engine.context_length),
                                    step=1, label="Max new tokens", elem_id="max-new-tokens")
                sampling = gr.Checkbox(False, label="Sampling (off: greedy)")
                temperature = gr.Slider(0.05, 2.0, value=0.7, step=0.05, label="Temperature")
                top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
                beams = gr.Slider(1, 8, value=1, step=1, label="Beams")
                repetition = gr.Slider(0.8, 2.0, value=1.0, step=0.05, label="Repetition penalty")

    turns = gr.State([])  # one rating snapshot per finished answer
    rid = gr.State(None)  # the request id Stop refers to
    gen_inputs = [note, task, instruction, history, max_new, sampling, temperature, top_p, beams, repetition,
                  chatbot, turns]
    gen_outputs = [chatbot, turns, rid, status]

    def run(note_text: str, task_label: str, instr: str, use_history: bool, mx, smp, temp, tp, bm, rep,
            chat: list, done: list, replace_last: bool = False) -> Iterator:
        chat = list(chat or [])
        done = list(done or [])
        if not (note_text or "").strip():
            yield chat, done, None, _error("The note is empty: paste a discharge summary first.")
            return
        if not (instr or "").strip():
            yield chat, done, None, _error("The instruction is empty: pick a task or type a question.")
            return
        t = by_label(task_label)
        if missing := missing_argument(t, instr):
            yield chat, done, None, _error(missing)
            return
        try:
            settings = settings_from(mx, smp, temp, tp, bm, rep)
            settings.validate()
        except GenerationError as exc:
            yield chat, done, None, _error(str(exc))
            return
        turns_so_far = [(d["instruction"], d["answer"]) for d in done]
        question = with_history(instr, turns_so_far) if use_history else instr
        prompt = engine.prompt(note_text, question)
        b = engine.budget(prompt, settings.max_new_tokens)
        if b is not None and not b.fits:
            yield chat, done, None, _error(b.describe() + ". Nothing was generated: lower max new tokens or use "
                                           "“Truncate note to fit” (it shows exactly what is cut).")
            return
        request, event = ctx.new_request()
        chat += [{"role": "user", "content": safe_markdown(instr)}, {"role": "assistant", "content": ""}]
        started = now_iso()
        yield chat, done, request, "Generating…"
        update = None
        try:
            for update in engine.stream(prompt, settings, event):
                chat[-1] = {"role": "assistant", "content": safe_markdown(update.text)}
                if not update.done:
                    yield chat, done, request, f"Generating… {update.new_tokens} tokens"
        except GenerationError as exc:
            chat = chat[:-2]
            yield chat, done, None, _error(str(exc))
            return
        finally:
            event.set()  # ends generation if the page went away mid-stream
            ctx.finish(request)
        line = stats_line(engine.model_id, engine.precision_label, update.new_tokens, update.seconds, update.stopped)
        chat[-1] = {"role": "assistant", "content": f"{safe_markdown(update.text)}\n\n<sub>{line}</sub>"}
        done.append(snapshot(note=note_text, task=t.label, instruction=instr, prompt=prompt, answer=update.text,
                             model_id=engine.model_id, revision=engine.revision, precision=engine.precision_label,
                             template=engine.template, settings=settings.as_dict(), started_at=started,
                             finished_at=now_iso(), seconds=update.seconds, new_tokens=update.new_tokens,
                             stopped=update.stopped))
        yield chat, done, None, ("Stopped. " if update.stopped else "") + line

    def regenerate(note_text, task_label, instr, use_history, mx, smp, temp, tp, bm, rep, chat, done):
        if not done:
            yield chat, done, None, _error("Nothing to regenerate yet.")
            return
        last = done[-1]
        yield from run(note_text, last["task"], last["instruction"], use_history, mx, smp, temp, tp, bm, rep,
                       list(chat)[:-2], done[:-1])

    def do_truncate(note_text: str, instr: str, mx, keep_choice: str):
        try:
            cut = engine.truncate_note(note_text or "", instr or "", int(mx),
                                       keep="end" if keep_choice == "Keep the end" else "start")
        except UserError as exc:
            return note_text, "", gr.update(), _error(str(exc))
        if not cut.cut:
            return note_text, "", gr.update(), "The note already fits; nothing was cut."
        msg = f"Cut {cut.cut_tokens} tokens ({len(cut.cut)} characters) from the note; the removed text is shown below."
        return cut.kept, cut.cut, gr.update(open=True), msg

    load_example.click(lambda name: examples.get(name, ""), example, note)
    for comp in (note, instruction, max_new):
        comp.change(lambda n, i, m: budget_text(ctx, n, i, m), [note, instruction, max_new], budget,
                    show_progress="hidden", trigger_mode="always_last")
    truncate.click(do_truncate, [note, instruction, max_new, keep], [note, cut_text, cut_box, status])
    limit = max(1, ctx.max_concurrent)
    ask.click(run, gen_inputs, gen_outputs, concurrency_limit=limit, concurrency_id="generate")
    instruction.submit(run, gen_inputs, gen_outputs, concurrency_limit=limit, concurrency_id="generate")
    regen.click(regenerate, gen_inputs, gen_outputs, concurrency_limit=limit, concurrency_id="generate")
    stop.click(lambda r: None if ctx.stop(r) else None, rid, None, queue=False, show_progress="hidden")
    clear.click(lambda: ([], [], None, "", ""), None, [chatbot, turns, rid, status, cut_text])

    if ctx.storage is not None:
        rating_widget.build(ctx, turns, chatbot)
