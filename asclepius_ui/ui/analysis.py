"""Admin "Analysis" tab: the ``eval.report`` tables and figures computed from the ratings database.

All statistics live in ``eval``; the handlers are in ``analysis_logic``; this file lays out and wires. The report
is computed when the page opens (or it says there are no ratings yet), never empty headers.
"""

from __future__ import annotations

import gradio as gr

from .analysis_logic import ALL, EMPTY, refresh
from .common import current_user, error_box, is_admin
from .context import AppContext

DENIED = "**Admins only.** Log in with an account that has the admin role to see the analysis."


def build(ctx: AppContext):
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
            refresh_button = gr.Button("Refresh", variant="primary", elem_id="analysis-refresh")
            status = gr.Markdown(elem_id="analysis-status")
            with gr.Column(visible=False) as results:
                headline = gr.Image(label="Mean score (95% CI)", type="filepath", interactive=False,
                                    elem_id="analysis-means-plot")
                means = gr.Dataframe(label="Mean score per model", interactive=False, elem_id="analysis-means")
                pairwise = gr.Dataframe(label="Win rates and Bradley-Terry strengths", interactive=False,
                                        elem_id="analysis-pairwise")
                agreement = gr.Dataframe(label="Agreement", interactive=False, elem_id="analysis-agreement")
                gallery = gr.Gallery(label="Figures", columns=2, height="auto", object_fit="contain",
                                     elem_id="analysis-figures")
                download = gr.File(label="Report (Markdown and PNGs)", interactive=False, elem_id="analysis-download")

    outputs = [results, status, means, pairwise, agreement, headline, gallery, download]

    def allowed(request: gr.Request | None) -> bool:
        return is_admin(ctx, current_user(request))

    def study_choices(selected: str | None = None):
        names = [s["name"] for s in st.studies()]
        return gr.update(choices=[ALL, *names], value=selected if selected in names else ALL)

    def on_refresh(selected, boot, files, request: gr.Request):
        if not allowed(request):
            return (gr.update(visible=False), error_box("Admins only."), *EMPTY[1:])
        show, values = refresh(st, selected, boot, files)
        return (gr.update(visible=show), *values)

    def on_load(request: gr.Request):
        if not allowed(request):
            return gr.update(visible=True, value=DENIED), gr.update(visible=False), gr.update()
        return gr.update(visible=False), gr.update(visible=True), study_choices()

    gr.on(triggers=None, fn=on_load, inputs=None, outputs=[denied, body, study], show_progress="hidden")
    refresh_button.click(lambda s: study_choices(s), study, study, show_progress="hidden").then(
        on_refresh, [study, n_boot, judged], outputs)

    def when_opened(tab: gr.Tab) -> None:
        """Compute the report whenever the tab is opened (or say there are no ratings yet)."""
        tab.select(on_refresh, [study, n_boot, judged], outputs)

    return when_opened
