"""Admin: import a study file, follow progress per rater and per-model mean scores, download exports.

Layout and wiring only; the handlers are in ``admin_logic``.
"""

from __future__ import annotations

import gradio as gr

from ..export import FORMATS
from . import admin_logic as logic
from .common import current_user, error_box, is_admin
from .context import AppContext

DENIED = "**Admins only.** Log in with an account that has the admin role to import studies and export ratings."
EXPORTS = {"ratings": "Chat & compare ratings", "comparisons": "Comparisons", "study": "Study ratings",
           "dpo": "DPO preference pairs"}
chat_means = logic.chat_means  # kept for older imports


def build(ctx: AppContext) -> None:
    st = ctx.storage
    with gr.Column(elem_id="admin-page"):
        denied = gr.Markdown(visible=False, elem_id="admin-denied")
        with gr.Column(visible=False) as body:
            gr.Markdown("### Import a study\nOne item per row (JSONL or CSV): `note`, `question`, `task` and one "
                        "`answer_<model>` column per model (at least two); an optional `id` names the item.")
            with gr.Row():
                upload = gr.File(label="Study file", file_types=[".jsonl", ".csv"], type="filepath",
                                 elem_id="admin-file")
                with gr.Column():
                    name = gr.Textbox(label="Study name (default: the file name)", elem_id="admin-study-name")
                    overlap = gr.Number(value=2, precision=0, minimum=1, label="Raters per item (overlap)",
                                        elem_id="admin-overlap")
                    duplicate = gr.Checkbox(False, label="Import even if identical to an existing study",
                                            elem_id="admin-duplicate")
                    findings = gr.Checkbox(False, elem_id="admin-show-findings",
                                           label="Show raters the answer check (claims the note does not support, "
                                                 "marked; stored with their ratings). Off by default: it could "
                                                 "bias scores")
                    do_import = gr.Button("Import study", variant="primary", elem_id="admin-import")
            import_status = gr.Markdown(elem_id="admin-import-status")
            gr.Markdown("### Progress")
            with gr.Row():
                study = gr.Dropdown(choices=[], value=None, label="Study", elem_id="admin-study", scale=3,
                                    allow_custom_value=True)
                refresh = gr.Button("Refresh", elem_id="admin-refresh", scale=1)
            overall = gr.Markdown(elem_id="admin-overall")
            raters = gr.Dataframe(headers=["rater", "rated", "skipped", "open", "minutes"], interactive=False,
                                  label="Progress per rater", elem_id="admin-raters")
            means = gr.Dataframe(headers=["model", "ratings", "mean score"], interactive=False,
                                 label="Per-model mean score so far (study)", elem_id="admin-means")
            chat = gr.Dataframe(headers=["model", "ratings", "mean score"], interactive=False,
                                label="Per-model mean score (chat and compare ratings)", elem_id="admin-chat-means")
            gr.Markdown("### Export")
            fmt = gr.Radio(list(FORMATS), value="csv", label="Format", elem_id="admin-format")
            with gr.Row():
                buttons = {w: gr.Button(f"Export {t.lower()}", elem_id=f"admin-export-{w}") for w, t in EXPORTS.items()}
            download = gr.File(label="Download", interactive=False, elem_id="admin-download")
            export_status = gr.Markdown(elem_id="admin-export-status")

    def allowed(request: gr.Request | None) -> bool:
        return is_admin(ctx, current_user(request))

    def studies_update(selected=None):
        choices = logic.study_choices(st)
        ids = [c[1] for c in choices]
        return gr.update(choices=choices, value=selected if selected in ids else (ids[-1] if ids else None))

    def on_load(request: gr.Request):
        if not allowed(request):
            return gr.update(visible=True, value=DENIED), gr.update(visible=False), gr.update(), "", [], [], []
        sel = studies_update()
        return (gr.update(visible=False), gr.update(visible=True), sel, *logic.report(st, sel["value"]))

    def on_import(path, study_name, ov, again, show, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        if not allowed(request):
            return error_box("Admins only."), gr.update()
        text, sid = logic.import_study(st, path, study_name, ov, current_user(request), again,
                                       lambda done, total: progress(done / total, desc=f"{done} of {total} items"),
                                       show_findings=show)
        return text, (studies_update(sid) if sid is not None else gr.update())

    def on_export(what: str):
        def handler(form: str, request: gr.Request):
            if not allowed(request):
                return None, error_box("Admins only.")
            return logic.export_file(st, what, form)

        return handler

    def report_for(s, request: gr.Request):
        return logic.report(st, s) if allowed(request) else ("", [], [], [])

    def on_refresh(s, request: gr.Request):
        if not allowed(request):
            return gr.update(), "", [], [], []
        sel = studies_update(s)
        return (sel, *logic.report(st, sel["value"]))

    gr.on(triggers=None, fn=on_load, inputs=None, outputs=[denied, body, study, overall, raters, means, chat],
          show_progress="hidden")
    do_import.click(on_import, [upload, name, overlap, duplicate, findings], [import_status, study]).then(
        report_for, study, [overall, raters, means, chat])
    refresh.click(on_refresh, study, [study, overall, raters, means, chat])
    study.input(report_for, study, [overall, raters, means, chat])
    for what, button in buttons.items():
        button.click(on_export(what), fmt, [download, export_status])
    with body:
        memory_block(ctx, refresh, allowed)


def memory_block(ctx: AppContext, refresh: gr.Button, allowed) -> None:
    """What the engines keep of notes read ahead or asked about (entries and memory against their bounds)."""
    line = gr.Markdown(elem_id="admin-note-memory")

    def show(request: gr.Request):
        return logic.note_memory(ctx) if allowed(request) else ""

    gr.on(triggers=None, fn=show, inputs=None, outputs=line, show_progress="hidden")
    refresh.click(show, None, line, show_progress="hidden")
