"""Admin "Analysis" tab: the ``eval.report`` tables and figures computed from the ratings database.

All statistics live in ``eval``; this page only collects the inputs, calls ``eval.report`` and shows the result.
"""

from __future__ import annotations

import shutil

import gradio as gr

from eval.report import build_report, figure_caption, summary_tables

from .. import private_files
from ..errors import UserError
from .common import current_user, error_box, is_admin, user_message
from .context import AppContext

DENIED = "**Admins only.** Log in with an account that has the admin role to see the analysis."
ALL = "All studies"
REPORT_MAX_AGE_S = 3600  # private report folders older than this are removed at the next refresh


def compute(storage, study: str | None, judged: list[str] | None, n_boot: int) -> tuple:
    """Run the report into a fresh private folder: (status, means, pairwise, agreement, headline, gallery, zip).

    The folder (0700) is removed an hour later, at the next refresh, or when the server stops."""
    private_files.sweep(REPORT_MAX_AGE_S)
    out = private_files.new_folder("analysis-")
    report, figures, md = build_report(out / "report", judged=list(judged or []), storage=storage,
                                       study=None if study in (None, "", ALL) else study, n_boot=int(n_boot))
    tables = summary_tables(report)
    archive = shutil.make_archive(str(out / "analysis-report"), "zip", out / "report")
    parts = [f"{r.title}: {r.n_ratings} ratings of {r.n_items} items" for r in report.results]
    status = "Computed from " + "; ".join(parts) + f". Report: `{md.name}` with {len(figures)} figure(s)."
    headline = str(figures["means"]) if "means" in figures else None
    gallery = [(str(p), figure_caption(name)) for name, p in figures.items() if name != "means"]
    return status, tables["means"], tables["pairwise"], tables["agreement"], headline, gallery, archive


def build(ctx: AppContext) -> None:
    st = ctx.storage
    with gr.Column(elem_id="analysis-page"):
        denied = gr.Markdown(visible=False, elem_id="analysis-denied")
        with gr.Column(visible=False) as body:
            gr.Markdown("### Analysis\nMean scores with bootstrap 95% intervals, score distributions, win rates, "
                        "Bradley-Terry strengths and rater agreement from the ratings in this database. Add judged "
                        "files from `python -m eval.judge` to compare the LLM judge with the experts.")
            with gr.Row():
                study = gr.Dropdown(choices=[ALL], value=ALL, label="Study ratings from", elem_id="analysis-study",
                                    scale=2)
                n_boot = gr.Number(value=1000, precision=0, minimum=100, maximum=20000, label="Bootstrap resamples",
                                   elem_id="analysis-bootstrap", scale=1)
                judged = gr.File(label="Judged files (optional)", file_count="multiple", file_types=[".jsonl"],
                                 type="filepath", elem_id="analysis-judged", scale=2)
            refresh = gr.Button("Refresh", variant="primary", elem_id="analysis-refresh")
            status = gr.Markdown(elem_id="analysis-status")
            headline = gr.Image(label="Mean score (95% CI)", type="filepath", interactive=False,
                                elem_id="analysis-means-plot")
            means = gr.Dataframe(label="Mean score per model", interactive=False, elem_id="analysis-means")
            pairwise = gr.Dataframe(label="Win rates and Bradley-Terry strengths", interactive=False,
                                    elem_id="analysis-pairwise")
            agreement = gr.Dataframe(label="Agreement", interactive=False, elem_id="analysis-agreement")
            gallery = gr.Gallery(label="Figures", columns=2, height="auto", object_fit="contain",
                                 elem_id="analysis-figures")
            download = gr.File(label="Report (Markdown and PNGs)", interactive=False, elem_id="analysis-download")

    outputs = [status, means, pairwise, agreement, headline, gallery, download]
    empty = ("", None, None, None, None, [], None)

    def allowed(request: gr.Request | None) -> bool:
        return is_admin(ctx, current_user(request))

    def study_choices(selected: str | None = None):
        names = [s["name"] for s in st.studies()]
        return gr.update(choices=[ALL, *names], value=selected if selected in names else ALL)

    def on_load(request: gr.Request):
        if not allowed(request):
            return gr.update(visible=True, value=DENIED), gr.update(visible=False), gr.update()
        return gr.update(visible=False), gr.update(visible=True), study_choices()

    def on_refresh(selected, boot, files, request: gr.Request):
        if not allowed(request):
            return (error_box("Admins only."), *empty[1:])
        try:
            from ..text_input import finite_number

            n_boot = finite_number(boot if boot not in (None, "") else 1000, "Bootstrap resamples", lo=100,
                                   hi=20000, integer=True)
            return compute(st, selected, files, n_boot)
        except UserError as exc:
            return (error_box(str(exc)), *empty[1:])
        except Exception as exc:  # noqa: BLE001
            return (user_message(exc, "analysis"), *empty[1:])

    gr.on(triggers=None, fn=on_load, inputs=None, outputs=[denied, body, study], show_progress="hidden")
    refresh.click(lambda s: study_choices(s), study, study, show_progress="hidden").then(
        on_refresh, [study, n_boot, judged], outputs)
