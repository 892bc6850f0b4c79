"""Admin: import a study file, follow progress per rater and per-model mean scores, download exports."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import gradio as gr

from ..export import FORMATS, export
from ..rating_logic import StorageError
from ..studies import StudyFileError, parse_study_file
from .context import AppContext
from .rating_widget import current_user, error_box, is_admin

DENIED = "**Admins only.** Log in with an account that has the admin role to import studies and export ratings."
EXPORTS = {"ratings": "Chat & compare ratings", "comparisons": "Comparisons", "study": "Study ratings",
           "dpo": "DPO preference pairs"}


def chat_means(storage) -> list[list]:
    """Per-model mean of the current chat/compare ratings."""
    acc: dict[str, list[int]] = defaultdict(list)
    for r in storage.ratings():
        acc[r["model_id"]].append(r["score"])
    return [[m, len(v), round(sum(v) / len(v), 3)] for m, v in sorted(acc.items())]


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
                    do_import = gr.Button("Import study", variant="primary", elem_id="admin-import")
            import_status = gr.Markdown(elem_id="admin-import-status")
            gr.Markdown("### Progress")
            with gr.Row():
                study = gr.Dropdown(choices=[], value=None, label="Study", elem_id="admin-study", scale=3)
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
        rows = st.studies()
        choices = [(f"{s['name']} ({s['items']} items, overlap {s['overlap']})", s["id"]) for s in rows]
        ids = [c[1] for c in choices]
        return gr.update(choices=choices, value=selected if selected in ids else (ids[-1] if ids else None))

    def report(study_id):
        chat_rows = chat_means(st)
        if study_id is None:
            return "No study yet.", [], [], chat_rows
        info = next((s for s in st.studies() if s["id"] == int(study_id)), None)
        if info is None:
            return "No such study.", [], [], chat_rows
        prog = st.study_progress(int(study_id))
        done = sum(p["done"] for p in prog)
        target = info["items"] * info["overlap"]
        rows = [[p["rater"], p["done"], p["skipped"], p["open"], round(p["seconds"] / 60, 2)] for p in prog]
        mean_rows = [[m["model"], m["n"], m["mean"]] for m in st.model_means(int(study_id))]
        text = (f"**{info['name']}**: {done} of {target} item ratings done ({info['items']} items × overlap "
                f"{info['overlap']}), {len(prog)} rater(s).")
        return text, rows, mean_rows, chat_rows

    def on_load(request: gr.Request):
        if not allowed(request):
            return gr.update(visible=True, value=DENIED), gr.update(visible=False), gr.update(), "", [], [], []
        sel = studies_update()
        return (gr.update(visible=False), gr.update(visible=True), sel, *report(sel["value"]))

    def on_import(path, study_name, ov, request: gr.Request):
        if not allowed(request):
            return error_box("Admins only."), gr.update()
        if not path:
            return error_box("Choose a study file first."), gr.update()
        try:
            parsed = parse_study_file(path)
        except StudyFileError as exc:
            lines = "\n".join(f"- {p}" for p in exc.problems[:20])
            more = f"\n- … and {len(exc.problems) - 20} more" if len(exc.problems) > 20 else ""
            return f"**Nothing was imported**; fix the file and try again:\n\n{lines}{more}", gr.update()
        label = (study_name or "").strip() or Path(path).stem
        try:
            sid = st.create_study(label, parsed, int(ov or 0), current_user(request))
        except (ValueError, StorageError) as exc:
            return error_box(f"Nothing was imported: {exc}"), gr.update()
        return (f"Imported study **{label}**: {len(parsed.items)} items, models {', '.join(parsed.models)}, "
                f"overlap {int(ov)}."), studies_update(sid)

    def on_export(what: str):
        def handler(form: str, request: gr.Request):
            if not allowed(request):
                return None, error_box("Admins only.")
            out = Path(tempfile.mkdtemp(prefix="asclepius-export-")) / f"{what}.{form}"
            try:
                n = export(st, what, form, out, progress=False)
            except (StorageError, OSError, ValueError) as exc:
                return None, error_box(f"Export failed: {exc}")
            return str(out), f"Exported {n} rows to `{out.name}`."

        return handler

    gr.on(triggers=None, fn=on_load, inputs=None, outputs=[denied, body, study, overall, raters, means, chat],
          show_progress="hidden")
    def report_for(s, request: gr.Request):
        return report(s) if allowed(request) else ("", [], [], [])

    do_import.click(on_import, [upload, name, overlap], [import_status, study]).then(
        report_for, study, [overall, raters, means, chat])

    def on_refresh(s, request: gr.Request):
        if not allowed(request):
            return gr.update(), "", [], [], []
        sel = studies_update(s)
        return (sel, *report(sel["value"]))

    refresh.click(on_refresh, study, [study, overall, raters, means, chat])
    study.input(report_for, study, [overall, raters, means, chat])
    for what, button in buttons.items():
        button.click(on_export(what), fmt, [download, export_status])
