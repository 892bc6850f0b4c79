"""The blinded expert study: each rater gets items in their own order, answers shuffled as A, B, C..., rated 1-4.

Layout and wiring only; the handlers are in ``study_logic``.
"""

from __future__ import annotations

import gradio as gr

from ..studies import LABELS
from . import study_logic as logic
from .common import current_user, escape_html, html_block
from .context import AppContext
from .rating_widget import rubric_markdown, score_choices

INTRO = ("Rate every answer to the question about the note from 1 to 4 with the rubric below; the models' names "
         "are hidden and the answers are in a random order. You may skip an item. Your place is kept: close the "
         "browser and come back any time.")
progress_html = logic.progress_html  # kept for older imports
SESSION_ENDED = ("Your session ended (the server was restarted, or you were logged out). Nothing you entered on "
                 "this item is lost: it is kept in this browser. Log in again and press “Start / resume”.")

# What the rater enters on an item is kept in localStorage under the item's draft key (``data-draft-key`` of the
# progress bar) until it is saved, and put back when the item is shown again (after a restart, a new login, a
# reload). Before Submit/Skip/Start the page checks its session: if the server no longer knows it, it says so and
# offers the login instead of Gradio's bare "Error". Served in page_script.
DRAFTS = """
if (!window.__studyDrafts) {
  window.__studyDrafts = true;
  const page = () => document.querySelector('#study-page');
  const key = () => document.querySelector('#study-progress [data-draft-key]')?.dataset.draftKey || '';
  const labels = () => [...document.querySelectorAll('[id^="study-score-"]')]
      .map(e => e.id.slice('study-score-'.length));
  const read = () => {
    const d = {};
    for (const l of labels()) {
      const r = document.querySelector(`#study-score-${l} input[type=radio]:checked`);
      const c = document.querySelector(`#study-comment-${l} textarea, #study-comment-${l} input`);
      if (r || (c && c.value)) d[l] = {score: r ? r.value : null, comment: c ? c.value : ''};
    }
    return d;
  };
  const save = () => {
    const k = key();
    if (!k) return;
    const d = read();
    if (Object.keys(d).length) localStorage.setItem(k, JSON.stringify(d)); else localStorage.removeItem(k);
  };
  document.addEventListener('input', (e) => { if (page()?.contains(e.target)) save(); }, true);
  document.addEventListener('change', (e) => { if (page()?.contains(e.target)) save(); }, true);
  // Put a draft back once the item's fields exist: they may mount late (the item box turns visible in the same
  // update), and a field Gradio empties after the draft went in is filled again; a field the rater has changed
  // since is left alone. Tries for a few seconds, then gives up.
  let restored = '';
  const apply = (d) => {
    let missing = false;
    for (const [l, v] of Object.entries(d)) {
      if (v.score) {
        const radios = [...document.querySelectorAll(`#study-score-${l} input[type=radio]`)];
        const r = radios.find(x => x.value === v.score);
        if (!r) missing = true; else if (!radios.some(x => x.checked)) r.click();
      }
      if (v.comment) {
        const c = document.querySelector(`#study-comment-${l} textarea, #study-comment-${l} input`);
        if (!c) missing = true;
        else if (!c.value) { c.value = v.comment; c.dispatchEvent(new Event('input', {bubbles: true})); }
      }
    }
    return !missing;
  };
  const restore = () => {
    const k = key();
    if (!k || k === restored) return;
    restored = k;
    const d = JSON.parse(localStorage.getItem(k) || 'null');
    if (!d) return;
    let tries = 0, settled = 0;
    const tick = () => {
      if (key() !== k) return;
      settled = apply(d) ? settled + 1 : 0;
      if (settled < 3 && ++tries < 40) setTimeout(tick, 250);
    };
    setTimeout(tick, 250);
  };
  let saving = '';
  new MutationObserver(() => {
    const status = document.querySelector('#study-status')?.innerText || '';
    if (saving && status.startsWith('Saved item')) { localStorage.removeItem(saving); saving = ''; }
    restore();
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
  document.addEventListener('click', async (e) => {
    const b = e.target.closest?.('#study-submit, #study-skip, #study-start');
    if (!b) return;
    if (b.id === 'study-submit' || b.id === 'study-skip') { save(); saving = key(); }
    const r = await fetch('config', {credentials: 'same-origin'}).catch(() => null);
    if (r && r.status === 401) {
      const box = document.querySelector('#study-session');
      if (box) box.innerHTML = '<div class="error-box">' + box.dataset.message +
          ' <a href="./">Log in again</a></div>';
    }
  }, true);
}
"""


def _updates(shown: logic.Shown, n_slots: int) -> list:
    """``Shown`` as the page's outputs, in ``outputs`` order."""
    def keep(v):
        return gr.update() if v is logic.KEEP else v

    if shown.slots is None:
        slot_ups = [gr.update()] * (5 * n_slots)
    else:
        slot_ups = [u for s in shown.slots for u in (gr.update(visible=s.visible), s.text, None, "", s.evidence)]
    visible = shown.visible if shown.visible is logic.KEEP else gr.update(visible=shown.visible)
    return [keep(visible), keep(shown.header), keep(shown.note), *slot_ups, keep(shown.state), keep(shown.progress),
            shown.status]


def build(ctx: AppContext) -> None:
    st = ctx.storage
    with gr.Column(elem_id="study-page"):
        gr.Markdown(INTRO)
        with gr.Row():
            study = gr.Dropdown(choices=[], value=None, label="Study", elem_id="study-pick", scale=3,
                                allow_custom_value=True)  # studies imported later, API calls: checked in logic
            start = gr.Button("Start / resume", variant="primary", elem_id="study-start", scale=1)
        progress = html_block(elem_id="study-progress")
        html_block(f'<div id="study-session" data-message="{escape_html(SESSION_ENDED)}"></div>',
                   elem_id="study-drafts", padding=False)
        # The item: the note on one side; the question, the rubric, the answers with their scores and Submit on the
        # other; each side scrolls on its own at laptop size (theme.LAYOUT_CSS), so no score needs the note
        # scrolled away and the rubric is above Submit.
        with gr.Column(visible=False) as item_box:
            with gr.Row(equal_height=False, elem_id="study-item"):
                with gr.Column(scale=1, min_width=320, elem_id="study-note-side"):
                    note = gr.Textbox(label="Discharge summary", lines=10, max_lines=200, interactive=False,
                                      elem_id="study-note")
                with gr.Column(scale=1, min_width=320, elem_id="study-answers-side"):
                    header = gr.Markdown(elem_id="study-question")
                    with gr.Accordion("Rubric", open=False, elem_id="study-rubric"):
                        gr.Markdown(rubric_markdown())
                    slots = []
                    for lab in LABELS:
                        with gr.Group(visible=False) as group:
                            text = gr.Textbox(label=f"Answer {lab}", lines=3, max_lines=20, interactive=False,
                                              elem_id=f"study-answer-{lab}")
                            score = gr.Radio(score_choices(), label=f"Score for answer {lab}",
                                             elem_id=f"study-score-{lab}")
                            comment = gr.Textbox(label=f"Comment on answer {lab} (optional)",
                                                 elem_id=f"study-comment-{lab}")
                            with gr.Accordion(f"Where in the note (answer {lab})", open=False):
                                evidence = html_block(elem_id=f"study-evidence-{lab}")
                        slots.append((group, text, score, comment, evidence))
                    with gr.Row():
                        submit = gr.Button("Submit ratings", variant="primary", elem_id="study-submit")
                        skip = gr.Button("Skip this item", elem_id="study-skip")
        status = gr.Markdown(elem_id="study-status")
    current = gr.State(None)  # {"view": assignment, "shown": monotonic seconds, "uid": idempotency key}
    n = len(slots)
    outputs = [item_box, header, note, *[c for slot in slots for c in slot], current, progress, status]
    form = [c for _, _, score, comment, _ in slots for c in (score, comment)]

    def on_load():
        choices = logic.study_choices(st)
        return gr.update(choices=choices, value=choices[-1][1] if choices else None)

    def on_start(study_id, request: gr.Request):
        return _updates(logic.start(st, study_id, current_user(request), n), n)

    def on_submit(request: gr.Request, state, study_id, *values):  # request first: Gradio fills it before *values
        return _updates(logic.submit(st, state, study_id, current_user(request), list(values), n), n)

    def on_skip(state, study_id, request: gr.Request):
        return _updates(logic.skip(st, state, study_id, current_user(request), n), n)

    gr.on(triggers=None, fn=on_load, inputs=None, outputs=study, show_progress="hidden")
    quick = dict(concurrency_limit=None, show_progress="hidden")  # short database calls
    start.click(on_start, study, outputs, api_name="study_next", **quick)
    submit.click(on_submit, [current, study, *form], outputs, api_name="study_submit", **quick)
    skip.click(on_skip, [current, study], outputs, api_name="study_skip", **quick)
