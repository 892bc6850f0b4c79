"""The Batch page's handlers as plain functions, tested without a browser."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .. import batch, phi_guard
from ..engines import GenerationSettings
from ..errors import UserError
from .chat_logic import GUARD_REDACT, GUARD_SEND, internal_error
from .common import error_box


def columns(path: str | None) -> tuple[list[str], str]:
    """The uploaded file's columns and a one-line description (or an error box)."""
    if not path:
        return [], ""
    try:
        rows = batch.read_table(path)
    except UserError as exc:
        return [], error_box(str(exc))
    cols = list(dict.fromkeys(k for r in rows[:200] for k in r))
    return cols, f"{len(rows)} rows; columns: {', '.join(cols)}"


def run_batch(ctx, rid: str | None, path: str | None, task_labels: list[str] | None, question_column: str | None,
              max_new, guard_choice: str | None, progress: Callable[[float, str], None] | None = None,
              ) -> Iterator[tuple[str, list[dict], str | None, str | None]]:
    """Answer every job of the file; yields (status, rows so far, CSV path, JSONL path)."""
    rid, event = ctx.claim(rid)
    try:
        yield from _run(ctx.engine, event, path, task_labels, question_column, max_new, guard_choice, progress)
    except UserError as exc:
        yield error_box(str(exc)), [], None, None
    except Exception as exc:  # a bug: say so, log it, keep the page working
        yield internal_error(exc), [], None, None
    finally:
        event.set()
        ctx.finish(rid)


def _run(engine, event, path, task_labels, question_column, max_new, guard_choice, progress):
    if event.is_set():
        yield "Stopped while waiting in the queue: nothing was run.", [], None, None
        return
    if not path:
        yield error_box("Upload a CSV or JSONL file with a 'note' column first."), [], None, None
        return
    jobs = batch.make_jobs(batch.read_table(path), task_labels, question_column or None)
    remote = phi_guard.leaves_machine(engine)
    if remote and guard_choice not in (GUARD_SEND, GUARD_REDACT):
        yield error_box(f"Nothing was sent: these {len(jobs)} prompts would go to a remote model. Confirm under "
                        "“Privacy guard” (send as they are, or redacted copies)."), [], None, None
        return
    if remote and guard_choice == GUARD_REDACT:
        jobs = [{**j, "note": phi_guard.redact(j["note"], phi_guard.scan(str(j["note"])))} for j in jobs]
    settings = GenerationSettings(max_new_tokens=int(max_new))
    settings.validate()
    rows: list[dict] = []
    total = len(jobs)
    if progress:
        progress(0.0, f"0 of {total}")
    yield f"Answering {total} prompts…", rows, None, None
    for row in batch.run_jobs(engine, jobs, settings, event):
        rows.append(row)
        if progress:
            progress(len(rows) / total, f"{len(rows)} of {total}")
        yield f"Answered {len(rows)} of {total}…", rows, None, None
    failed = sum(bool(r.get("error")) for r in rows)
    head = "Stopped" if event.is_set() and len(rows) < total else "Done"
    text = f"{head}: {len(rows)} of {total} answered" + (f", {failed} could not be answered" if failed else "") + "."
    if not rows:
        yield text, rows, None, None
        return
    yield text, rows, str(batch.write_rows(rows, "csv")), str(batch.write_rows(rows, "jsonl"))
