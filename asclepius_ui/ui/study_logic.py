"""The study page's handlers as plain functions: storage and form values in, the page's new values out.

Every handler returns ``Shown``: what the item area, the state, the progress bar and the status line become.
``None`` in a field means "leave it as it is" (the page turns it into ``gr.update()``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..claims import check_answer, render_answer_html
from ..errors import UserError
from ..evidence import find_evidence, render_html
from ..rating_logic import new_uid
from ..text_input import finite_number
from .common import error_box, escape_html, safe_markdown, user_message

KEEP = object()  # leave this output unchanged
MAX_ID = 2**31 - 1  # database ids are 32-bit integers: a larger "study id" is a bad request, not a crash


@dataclass
class Slot:
    """One answer's area: shown or not, its text, where in the note it is supported (escaped HTML), and the
    form reset (score None, comment "")."""

    visible: bool
    text: str = ""
    evidence: str = ""


@dataclass
class Shown:
    visible: object = KEEP
    header: object = KEEP
    note: object = KEEP
    slots: list[Slot] | None = None  # None: keep the slots as they are
    state: object = KEEP
    progress: object = KEEP
    status: str = ""


def draft_key(study_id, user: str, view: dict) -> str:
    """Where the page keeps what the rater entered on this item until it is saved (the browser's localStorage):
    one key per study, item and user, so a restart or a new login finds it again."""
    return f"asclepius-draft|{study_id}|{view['assignment_id']}|{user}"


def progress_html(p: dict | None, draft: str = "") -> str:
    """A progress bar of the rater's items: rated of (rated + open + still available); ``draft`` is the shown
    item's ``draft_key`` (the page's script keeps the unsaved form under it)."""
    if not p:
        return ""
    total = max(p["total"], 1)
    pct = round(100 * p["done"] / total)
    skipped = f", {p['skipped']} skipped" if p["skipped"] else ""
    return (f'<div class="study-progress" data-draft-key="{escape_html(draft)}" data-done="{p["done"]}" '
            f'data-total="{p["total"]}" data-skipped="{p["skipped"]}"><progress value="{p["done"]}" max="{total}" '
            f'style="width:100%">'
            f'{pct}%</progress><div>{p["done"]} of {p["total"]} items rated ({pct}%)'
            f"{skipped}</div></div>")


def header_markdown(view: dict) -> str:
    """The item's title, task and question as safe Markdown (the question comes from an imported file)."""
    task = f" · task: {safe_markdown(view['task'])}" if view["task"] else ""
    return f"**Item {safe_markdown(view['ext_id'])}**{task}\n\n**Question:** {safe_markdown(view['question'])}"


def show(st, view: dict | None, study_id, user: str, n_slots: int, message: str = "") -> Shown:
    """The page for ``view`` (an assignment) or, when None, the "nothing left" state."""
    prog = st.rater_progress(int(study_id), user) if study_id is not None else None
    if view is None:
        done = "Nothing left for you in this study: thank you!" if study_id is not None else ""
        return Shown(visible=False, header="", note="", slots=[Slot(False)] * n_slots, state=None,
                     progress=progress_html(prog), status=" ".join(x for x in (message, done) if x))
    answers = view["answers"][:n_slots]
    checks = {a["answer_id"]: check_answer(view["note"], a["text"]) for a in answers} if view.get("show_findings") \
        else {}
    slots = [Slot(True, a["text"], (render_answer_html(checks[a["answer_id"]]) if checks else "")
                  + render_html(view["note"], find_evidence(view["note"], a["text"])))
             for a in answers]
    slots += [Slot(False)] * (n_slots - len(slots))
    # what the rater is shown of the answer check, kept with the ratings when they submit
    state = {"view": view, "shown": time.monotonic(), "uid": new_uid(),
             "findings": {aid: c.as_dict() for aid, c in checks.items()} or None}
    return Shown(visible=True, header=header_markdown(view), note=view["note"], slots=slots, state=state,
                 progress=progress_html(prog, draft_key(study_id, user, view)), status=message)


def study_choices(st) -> list[tuple[str, int]]:
    return [(f"{s['name']} ({s['items']} items)", s["id"]) for s in st.studies()]


def start(st, study_id, user: str, n_slots: int) -> Shown:
    """Start or resume: the rater's open item, else a new one."""
    if study_id is None or study_id == "":
        return show(st, None, None, "", n_slots, error_box("Pick a study first (an admin imports them on the Admin "
                                                           "tab)."))
    try:
        study_id = finite_number(study_id, "The study id", lo=1, hi=MAX_ID, integer=True)
        view = st.next_assignment(int(study_id), user)
        return show(st, view, study_id, user, n_slots)
    except Exception as exc:  # noqa: BLE001 - UserError shown, anything else logged as an internal error
        return Shown(status=user_message(exc, "study start"))


def submit(st, state: dict | None, study_id, user: str, values: list, n_slots: int,
           clock=time.monotonic) -> Shown:
    """Save the ratings of the shown item (``values`` = score, comment per slot) and show the next one."""
    if not state:
        return Shown(status=error_box("Press Start first."))
    try:
        study_id = finite_number(study_id, "The study id", lo=1, hi=MAX_ID, integer=True)
    except UserError as exc:
        return Shown(status=error_box(str(exc)))
    view = state["view"]
    scores, missing = {}, []
    for i, ans in enumerate(view["answers"]):
        sc, cm = values[2 * i], values[2 * i + 1]
        if sc is None:
            missing.append(ans["label"])
        else:
            scores[ans["answer_id"]] = (sc, cm or "")
    if missing:
        return Shown(status=error_box(f"Rate every answer before submitting (missing: {', '.join(missing)}), "
                                      "or skip."))
    try:
        st.submit_item(assignment_id=view["assignment_id"], rater=user, uid=state["uid"], scores=scores,
                       seconds=clock() - state["shown"], findings=state.get("findings"))
    except UserError as exc:  # keep the form as it is, to retry
        return Shown(status=error_box(f"Not saved: {exc}"))
    except Exception as exc:  # noqa: BLE001
        return Shown(status=user_message(exc, "study submit"))
    try:
        nxt = st.next_assignment(int(study_id), user)
    except Exception as exc:  # noqa: BLE001 - saved; only the next item failed
        return Shown(state=None, status=f"Saved item {escape_html(view['ext_id'])}. " + user_message(exc))
    return show(st, nxt, study_id, user, n_slots, f"Saved item {escape_html(view['ext_id'])}.")


def skip(st, state: dict | None, study_id, user: str, n_slots: int, clock=time.monotonic) -> Shown:
    """Pass on the shown item and show the next one."""
    if not state:
        return Shown(status=error_box("Press Start first."))
    try:
        study_id = finite_number(study_id, "The study id", lo=1, hi=MAX_ID, integer=True)
        st.skip_item(state["view"]["assignment_id"], user, seconds=clock() - state["shown"])
        nxt = st.next_assignment(study_id, user)
    except Exception as exc:  # noqa: BLE001
        return Shown(status=user_message(exc, "study skip"))
    return show(st, nxt, study_id, user, n_slots, "Skipped.")
