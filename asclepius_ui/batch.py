"""Batch answers: read a table of notes, make one job per note and task (or question column), answer each with the
app's engine through the one ask flow (``asclepius_ui.ask``), write the answers with the export's writers. The Batch
page and ``eval.generate`` share ``answer_rows``, so a page run and a CLI run answer a row the same way.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import ask as flow
from . import data_sources, export, private_files
from .claims import check_answer
from .engines.base import GenerationResult, GenerationSettings
from .errors import InputError, UserError
from .tasks import TASKS, by_label, fill_instruction


def batch_tasks() -> list[str]:
    """Tasks a batch can run without a per-row argument: their instruction is complete, or has a default."""
    return [t.label for t in TASKS.values() if t.runs_unattended]


def read_table(path: str | Path) -> list[dict]:
    """Rows of an uploaded file (CSV, JSONL, parquet, compressed too) through ``data_sources``; a clear
    ``InputError`` for anything else or a malformed line."""
    return data_sources.read_records(str(path))


def make_jobs(rows: list[dict], task_labels: list[str] | None, question_column: str | None,
              note_column: str = "note") -> list[dict]:
    """One job per row and picked task, plus one per row from ``question_column``; each keeps its row's fields."""
    if not rows:
        raise InputError("The file has no rows.")
    if note_column not in rows[0]:
        raise InputError(f"The file needs a '{note_column}' column; it has: {', '.join(map(str, rows[0]))}.")
    if not task_labels and not question_column:
        raise InputError("Pick at least one task or a question column.")
    jobs = []
    for i, row in enumerate(rows):
        base = {k: v for k, v in row.items() if k not in ("task", "question", "answer")}
        base.setdefault("id", str(row.get("id") or i))
        for label in task_labels or []:
            t = by_label(label)
            jobs.append({**base, "task": t.key, "question": fill_instruction(t, t.default_arg)})
        if question_column:
            q = str(row.get(question_column) or "").strip()
            if q:
                jobs.append({**base, "task": str(row.get("task") or "qa"), "question": q})
    return jobs


def job_id(job: dict) -> str:
    """A stable id for one (row, question) pair."""
    h = hashlib.sha256(f"{job.get('note', '')}\x00{job.get('question', '')}".encode("utf-8", "replace"))
    return f"{job.get('id', '')}-{h.hexdigest()[:10]}"


@dataclass
class Answered:
    """One row's outcome: ``result`` or the ``error`` that kept it from being answered."""

    row: dict
    result: GenerationResult | None = None
    error: str | None = None


KEEPS = ("start", "end")  # what ``truncate`` keeps of a note too long for the context


def fit_note(engine, row: dict, max_new_tokens: int, keep: str) -> dict:
    """``row`` with its note cut on token boundaries (``Engine.truncate_note``, keeping its ``keep``) so the prompt
    fits the context; a row that was cut says so in ``truncated`` (how much, from where) and keeps its whole note
    in ``full_note``. Raises the engine's ``UserError`` when it cannot be cut (no tokenizer, the instruction alone
    is too long)."""
    cut = engine.truncate_note(str(row["note"]), str(row["question"]), int(max_new_tokens), keep=keep)
    if not cut.cut:
        return row
    where = "end" if keep == "start" else "start"
    return {**row, "note": cut.kept, "full_note": row["note"],
            "truncated": f"cut {cut.cut_tokens} tokens ({len(cut.cut)} characters) from the {where} of the note"}


def answer_rows(engine, rows: Iterable[dict], settings: GenerationSettings, *, batch_size: int = 1,
                concurrency: int = 1, stop_event: threading.Event | None = None,
                guard: str = flow.GUARD_SEND, truncate: str | None = None) -> Iterator[Answered]:
    """Answer each row's ``question`` about its ``note``: the one loop behind ``eval.generate`` and the Batch page.

    Each row goes through ``ask.prepare`` (checks, privacy guard with the caller's ``guard`` choice, prompt
    tokenised once, fit checked once): a row it refuses is an error for that row only. ``batch_size`` > 1 runs
    ``generate_batch`` on backends that batch (prompts sorted by length to limit padding); a backend that serves
    concurrent requests answers ``concurrency`` at a time; otherwise rows go one by one. Once ``stop_event`` is
    set, the running generation ends early and no further row starts. ``truncate`` ("start" or "end": the part
    to keep) cuts notes too long for the context first (``fit_note``); the answered row carries the cut note.
    """
    stop_event = stop_event or threading.Event()
    todo: list[tuple[dict, flow.Prepared]] = []
    for row in rows:
        try:
            if truncate:
                row = fit_note(engine, row, settings.max_new_tokens, truncate)
            request = flow.Request(note=str(row["note"]), instruction=str(row["question"]),
                                   task=str(row.get("task") or ""), settings=settings, guard=guard)
            todo.append((row, flow.prepare(engine, request)))
        except UserError as exc:
            yield Answered(row, error=str(exc))

    def one(rp: tuple[dict, flow.Prepared]) -> Answered:
        if stop_event.is_set():
            return Answered(rp[0], error="stopped before it started")
        try:
            return Answered(rp[0], flow.generate(rp[1], stop_event))
        except UserError as exc:
            return Answered(rp[0], error=str(exc))

    if engine.capabilities.batch and batch_size > 1:
        todo.sort(key=lambda rp: rp[1].prompt.n_tokens or 0)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            if stop_event.is_set():
                return
            try:
                results = engine.generate_batch([p.prompt for _, p in chunk], settings)
            except UserError as exc:
                yield from (Answered(r, error=str(exc)) for r, _ in chunk)
                continue
            yield from (Answered(r, res) for (r, _), res in zip(chunk, results, strict=True))
    elif engine.capabilities.concurrent and concurrency > 1:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            yield from pool.map(one, todo)
    else:
        for rp in todo:
            if stop_event.is_set():
                return
            yield one(rp)


def answer_job(engine, job: dict, settings, stop_event: threading.Event | None = None) -> dict:
    """The job plus ``answer`` (or ``error``) and how it was produced."""
    return job_row(engine, next(answer_rows(engine, [job], settings, stop_event=stop_event)))


def job_row(engine, done: Answered) -> dict:
    """A Batch page output row: the job, ``answer`` or ``error``, and how it was produced."""
    out = {**done.row, "model": engine.model_id, "template": engine.template, "precision": engine.precision_label}
    if done.result is None:
        return {**out, "answer": "", "error": done.error or ""}
    r = done.result
    check = check_answer(str(done.row.get("note", "")), r.text)
    return {**out, "answer": r.text, "error": "", "check": check.verdict, "findings": len(check.findings),
            "new_tokens": r.new_tokens, "seconds": round(r.seconds, 4), "stopped": r.stopped,
            **({"notice": r.notice} if r.notice else {})}


def run_jobs(engine, jobs: list[dict], settings, stop_event: threading.Event,
             guard: str = flow.GUARD_SEND, truncate: str | None = None) -> Iterator[dict]:
    """Answer ``jobs`` in order, yielding each finished row; stops before the next job once ``stop_event`` is set.
    With ``truncate`` (the part of a long note to keep), a row whose note was cut keeps the whole note in ``note``
    and says what was cut in ``truncated``."""
    for done in answer_rows(engine, jobs, settings, stop_event=stop_event, guard=guard, truncate=truncate):
        row = job_row(engine, done)
        if "full_note" in row:
            row["note"] = row.pop("full_note")
        yield row


def write_rows(rows: list[dict], fmt: str, folder: str | Path | None = None) -> Path:
    """``rows`` as a CSV or JSONL file in a private folder (0700, file 0600, removed at exit or by
    ``private_files.release``), written by the export's own writer: CSV cells never start a formula."""
    out = Path(folder or private_files.new_folder("batch-")) / f"answers.{fmt}"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    export.write_rows(rows, columns, fmt, out, progress=False)
    return out
