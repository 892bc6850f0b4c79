"""The Batch page: upload notes, pick tasks or a question column, run with progress and Stop, download answers."""

from __future__ import annotations

import functools

import gradio as gr

from .. import phi_guard
from ..ask import GUARD_CHOICES, GUARD_HOLD
from ..batch import batch_tasks
from ..export import FORMATS
from ..tokenization import default_max_new
from . import batch_logic as logic
from . import common
from .context import AppContext

HOW = ("Upload a **CSV or JSONL** file with a `note` column. Pick tasks to ask of every note (tasks that need a "
       "specific argument, such as an abbreviation, go in a question column), and/or a column holding a question "
       "per row. Answers use the same engine and code as `python -m eval.generate`, one prompt at a time.")
PREVIEW = ["id", "task", "question", "answer", "check", "error", "truncated"]


def build(ctx: AppContext) -> None:
    engine = ctx.engine
    remote = phi_guard.leaves_machine(engine)
    with gr.Column(elem_id="batch-page"):
        gr.Markdown(HOW)
        with gr.Row():
            with gr.Column(scale=3):
                upload = gr.File(label="Notes (.csv, .jsonl or .parquet; gzip too)",
                                 file_types=[".csv", ".jsonl", ".parquet", ".gz"], type="filepath",
                                 elem_id="batch-file")
                info = gr.Markdown(elem_id="batch-info")
            with gr.Column(scale=4):
                tasks = gr.Dropdown(batch_tasks(), multiselect=True, value=[], label="Tasks for every note",
                                    elem_id="batch-tasks")
                question = gr.Dropdown([], value=None, label="Question column (optional)", elem_id="batch-question",
                                       allow_custom_value=False)
                max_new = gr.Slider(1, max(1, engine.context_length), value=default_max_new(engine.context_length),
                                    step=1, label="Max new tokens", elem_id="batch-max-new")
                with gr.Row():
                    truncate = gr.Checkbox(False, label="Truncate notes to fit", elem_id="batch-truncate",
                                           info="Notes too long for the model's context are cut instead of failing; "
                                                "the answers say which in a “truncated” column.")
                    keep = gr.Radio(logic.KEEP_CHOICES, value="start", label="When truncating",
                                    elem_id="batch-keep")
                guard = gr.Radio(GUARD_CHOICES, value=GUARD_HOLD, visible=remote,
                                 elem_id="batch-guard", label="Privacy guard: this model is remote. Send the notes?")
                if remote:
                    gr.Markdown(phi_guard.about_markdown())
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="batch-run")
                    stop = gr.Button("Stop", variant="stop", elem_id="batch-stop")
        status = gr.Markdown(elem_id="batch-status")
        with gr.Row():
            outs = [gr.File(label=f"Answers ({fmt.upper()})", elem_id=f"batch-{fmt}") for fmt in FORMATS]
        preview = gr.Dataframe(headers=PREVIEW, label="Answers so far", elem_id="batch-preview", wrap=True,
                               max_height=320)
    rid = gr.State(None)

    def on_upload(path, request: gr.Request):
        cols, text = logic.columns(engine, path, common.session(request))
        guess = next((c for c in cols if c.lower() in ("question", "instruction")), None)
        return gr.update(choices=[""] + cols, value=guess), text, GUARD_HOLD

    def on_run(r, path, picked, qcol, mx, choice, cut, kept, progress=gr.Progress()):  # noqa: B008 - Gradio's way
        for text, rows, files in logic.run_batch(ctx, r, path, picked, qcol, mx, choice,
                                                 lambda f, d: progress(f, desc=d), truncate=kept if cut else None):
            table = [[str(row.get(k, ""))[:300] for k in PREVIEW] for row in rows] or None
            yield text, table, *(files.get(fmt) for fmt in FORMATS)

    upload.change(on_upload, upload, [question, info, guard], api_visibility="private")
    # Made when Run is pressed, before the run is queued: the request id (Stop finds the run by it) and a notice
    # when it will wait behind another generation.
    run.click(functools.partial(common.new_request, ctx), None, [rid, status], queue=False,
              show_progress="hidden", api_visibility="private").then(
        on_run, [rid, upload, tasks, question, max_new, guard, truncate, keep], [status, preview, *outs],
        concurrency_limit=max(1, ctx.max_concurrent), concurrency_id="generate", api_name="batch",
        show_progress_on=[status])
    stop.click(lambda r: common.stop(ctx, r) or gr.update(), rid, status, queue=False, show_progress="hidden",
               api_visibility="private")
