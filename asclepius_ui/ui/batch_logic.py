"""The Batch page's handlers as plain functions, tested without a browser."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .. import batch, export, phi_guard
from ..ask import GUARD_REDACT, GUARD_SEND, read_ahead
from ..engines import GenerationSettings
from ..errors import UserError
from .common import error_box, user_message


def columns(engine, path: str | None, session: str) -> tuple[list[str], str]:
    """The uploaded file's columns and a one-line description (or an error box); its first note starts being read
    ahead meanwhile (``read_first_note``)."""
    if not path:
        return [], ""
    try:
        rows = batch.read_table(path)
    except UserError as exc:
        return [], error_box(str(exc))
    cols = list(dict.fromkeys(k for r in rows[:200] for k in r))
    text = f"{len(rows)} rows; columns: {', '.join(cols)}"
    ahead = read_first_note(engine, rows, session)
    return cols, f"{text}\n\n{ahead}" if ahead else text


def read_first_note(engine, rows: list[dict], session: str) -> str:
    """Start reading the first row's note ahead (while the tasks are picked), so Run's first answer starts at once;
    the sentence to show, or "" when nothing is read (no note, a backend that cannot, a remote model: notes leave
    the machine only on Run)."""
    note = str(rows[0].get("note") or "") if rows else ""
    job = read_ahead(engine, note, "batch:" + session) if note.strip() else None
    return "Reading the first note ahead, so the first answer starts at once." if job is not None else ""


KEEP_CHOICES = [("Keep the start", "start"), ("Keep the end", "end")]


def run_batch(ctx, rid: str | None, path: str | None, task_labels: list[str] | None, question_column: str | None,
              max_new, guard_choice: str | None, progress: Callable[[float, str], None] | None = None,
              truncate: str | None = None) -> Iterator[tuple[str, list[dict], dict[str, str]]]:
    """Answer every job of the file; yields (status, rows so far, {export format: file path} once done).

    ``truncate`` ("start" or "end": the part to keep) cuts notes too long for the context instead of failing them.
    """
    rid, event = ctx.claim(rid)
    try:
        yield from _run(ctx.engine, event, path, task_labels, question_column, max_new, guard_choice, progress,
                        truncate)
    except Exception as exc:  # a UserError's own text; anything else is a bug: say so, log it, keep the page working
        yield user_message(exc, "batch"), [], {}
    finally:
        event.set()
        ctx.finish(rid)


def _run(engine, event, path, task_labels, question_column, max_new, guard_choice, progress, truncate):
    if event.is_set():
        yield "Stopped while waiting in the queue: nothing was run.", [], {}
        return
    if not path:
        yield error_box("Upload a CSV or JSONL file with a 'note' column first."), [], {}
        return
    jobs = batch.make_jobs(batch.read_table(path), task_labels, question_column or None)
    if phi_guard.leaves_machine(engine) and guard_choice not in (GUARD_SEND, GUARD_REDACT):
        yield error_box(f"Nothing was sent: these {len(jobs)} prompts would go to a remote model. Confirm under "
                        "“Privacy guard” (send as they are, or redacted copies)."), [], {}
        return
    if truncate and not engine.capabilities.tokenizer:
        yield error_box(f"Notes cannot be truncated: {engine.model_id} is served by a backend that cannot count "
                        "tokens here (pass --tokenizer DIR). Untick “Truncate notes to fit” to run them as they "
                        "are."), [], {}
        return
    settings = GenerationSettings(max_new_tokens=max_new)
    rows: list[dict] = []
    total = len(jobs)
    if progress:
        progress(0.0, f"0 of {total}")
    yield f"Answering {total} prompts…", rows, {}
    for row in batch.run_jobs(engine, jobs, settings, event, guard=guard_choice or GUARD_SEND,
                              truncate=truncate or None):
        rows.append(row)
        if progress:
            progress(len(rows) / total, f"{len(rows)} of {total}")
        yield f"Answered {len(rows)} of {total}…", rows, {}
    failed = sum(bool(r.get("error")) for r in rows)
    cut = sum(bool(r.get("truncated")) for r in rows)
    head = "Stopped" if event.is_set() and len(rows) < total else "Done"
    text = (f"{head}: {len(rows)} of {total} answered" + (f", {failed} could not be answered" if failed else "")
            + (f", {cut} from truncated notes (see the “truncated” column)" if cut else "") + ".")
    if not rows:
        yield text, rows, {}
        return
    folder = batch.private_files.new_folder("batch-")
    yield text, rows, {fmt: str(batch.write_rows(rows, fmt, folder)) for fmt in export.FORMATS}
