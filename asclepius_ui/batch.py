"""Batch answers: read a CSV/JSONL of notes, make one job per note and task (or question column), answer each
with the app's engine, write CSV/JSONL. The Batch page and ``eval.generate`` share ``fit_problem`` and
``answer_job``, so a page run and a CLI run answer a row the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import GenerationError, InputError, UserError
from .tasks import TASKS, by_label, fill_instruction

# Tasks a batch can run without a per-row argument: their instruction is complete, or takes a sensible default.
DEFAULT_ARGS = {"ner": "medical conditions, medications, procedures", "paraphrasing": "hospital course"}
BATCH_TASKS = [t.label for t in TASKS.values() if t.key in DEFAULT_ARGS or not t.needs_arg()]


def read_table(path: str | Path) -> list[dict]:
    """Rows of a .csv or .jsonl file; a clear ``InputError`` for anything else or a malformed line."""
    path = Path(path)
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if suffix == ".csv":
        return [dict(r) for r in csv.DictReader(io.StringIO(text))]
    if suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name} line {n} is not JSON: {exc.msg}.") from None
            if not isinstance(row, dict):
                raise InputError(f"{path.name} line {n} is not a JSON object.")
            rows.append(row)
        return rows
    raise InputError(f"{path.name}: upload a .csv or .jsonl file.")


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
            jobs.append({**base, "task": t.key, "question": fill_instruction(t, DEFAULT_ARGS.get(t.key))})
        if question_column:
            q = str(row.get(question_column) or "").strip()
            if q:
                jobs.append({**base, "task": str(row.get("task") or "qa"), "question": q})
    return jobs


def job_id(job: dict) -> str:
    """A stable id for one (row, question) pair."""
    h = hashlib.sha256(f"{job.get('note', '')}\x00{job.get('question', '')}".encode("utf-8", "replace"))
    return f"{job.get('id', '')}-{h.hexdigest()[:10]}"


def fit_problem(engine, prompt: str, settings) -> str | None:
    """Why ``prompt`` cannot be answered within the engine's context, or None when it fits (or cannot be known)."""
    try:
        engine.check_fits(prompt, settings)
    except GenerationError as exc:
        return str(exc)
    return None


def answer_job(engine, job: dict, settings, stop_event: threading.Event | None = None) -> dict:
    """The job plus ``answer`` (or ``error``) and how it was produced."""
    out = dict(job)
    prompt = engine.prompt(str(job["note"]), str(job["question"]))
    problem = fit_problem(engine, prompt, settings)
    out.update(model=engine.model_id, template=engine.template, precision=engine.precision_label)
    if problem:
        return {**out, "answer": "", "error": problem}
    try:
        result = engine.generate(prompt, settings, stop_event)
    except UserError as exc:
        return {**out, "answer": "", "error": str(exc)}
    return {**out, "answer": result.text, "error": "", "new_tokens": result.new_tokens,
            "seconds": round(result.seconds, 4), "stopped": result.stopped}


def run_jobs(engine, jobs: list[dict], settings, stop_event: threading.Event) -> Iterator[dict]:
    """Answer ``jobs`` in order, yielding each finished row; stops before the next job once ``stop_event`` is set."""
    for job in jobs:
        if stop_event.is_set():
            return
        yield answer_job(engine, job, settings, stop_event)


def write_rows(rows: list[dict], fmt: str, folder: str | Path | None = None) -> Path:
    """``rows`` as a CSV or JSONL file readable only by this user (0600); CSV cells cannot start a formula."""
    fd, name = tempfile.mkstemp(prefix="asclepius-batch-", suffix=f".{fmt}", dir=folder)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            fields = list(dict.fromkeys(k for r in rows for k in r))
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: _safe_cell(v) for k, v in r.items()})
    return Path(name)


def _safe_cell(value):
    """OWASP: a text cell starting with = + - @ tab or CR gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
