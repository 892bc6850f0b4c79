"""Blinded study logic with no database in it: read and check a study file, order items, shuffle answers.

A study file has one item per row (JSONL or CSV) with the columns ``note``, ``question``, ``task`` and one
``answer_<model>`` column per model (at least two); an optional ``id`` column names the item.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import string
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import data_sources
from .errors import InputError
from .items import ANSWER_PREFIX
from .tasks import normalize_task
from .text_input import LIMITS, check_upload, clean_text

REQUIRED = ("note", "question", "task")
MAX_ANSWERS = 10
LABELS = string.ascii_uppercase[:MAX_ANSWERS]


class StudyFileError(InputError):
    """The study file cannot be imported; ``problems`` lists every reason, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class StudyItemIn:
    """One row of a study file."""

    note: str
    question: str
    task: str
    answers: dict[str, str]
    ext_id: str = ""


@dataclass
class ParsedStudy:
    models: list[str]
    items: list[StudyItemIn] = field(default_factory=list)


YIELD_EVERY = 50  # rows parsed between two short pauses


def _rows_jsonl(text: str) -> tuple[list[tuple[int, dict]], list[str]]:
    rows, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if n % YIELD_EVERY == 0:
            time.sleep(0.001)
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not valid JSON ({exc.msg})")
            continue
        except RecursionError:
            problems.append(f"line {n}: JSON nested too deeply to be a study item")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {n}: expected a JSON object")
            continue
        rows.append((n, obj))
    return rows, problems


def _rows_csv(text: str) -> tuple[list[tuple[int, dict]], list[str]]:
    # The csv module refuses cells over 128 KB by default; a note may be up to the documented limit, so the
    # module's limit is raised to a little above it, and a larger cell is reported like any other problem.
    csv.field_size_limit(max(csv.field_size_limit(), LIMITS.note_bytes + 1024))
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
            if len(rows) % YIELD_EVERY == 0:
                time.sleep(0.001)
    except csv.Error as exc:
        too_big = "field larger than field limit" in str(exc)
        return rows, [f"line {reader.line_num + 1}: " + (f"a cell is over the {LIMITS.note_bytes // 1024} KB limit"
                                                          if too_big else f"not valid CSV ({exc})")]
    problems = [f"line {n}: more values than columns" for n, row in rows if None in row]
    return rows, problems


def parse_study_text(text: str, fmt: str) -> ParsedStudy:
    """Parse and validate a whole study file; raises ``StudyFileError`` listing every problem found."""
    if fmt not in ("jsonl", "csv"):
        raise StudyFileError([f"unknown format {fmt!r}: use a .jsonl or .csv file"])
    rows, problems = (_rows_jsonl if fmt == "jsonl" else _rows_csv)(text)
    if not rows and not problems:
        raise StudyFileError(["the file has no items"])
    columns: list[str] = []
    for _, row in rows:
        columns += [c for c in row if c is not None and c not in columns]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    models = [c[len(ANSWER_PREFIX):] for c in columns if c.startswith(ANSWER_PREFIX) and c[len(ANSWER_PREFIX):]]
    if len(models) < 2:
        problems.append(f"need at least two answer_<model> columns, found {len(models)}"
                        + (f" ({', '.join(models)})" if models else ""))
    if len(models) > MAX_ANSWERS:
        problems.append(f"at most {MAX_ANSWERS} answer columns are supported, found {len(models)}")
    parsed = ParsedStudy(models=models)
    seen_ids: set[str] = set()
    for k_row, (n, row) in enumerate(rows):
        if k_row % YIELD_EVERY == YIELD_EVERY - 1:
            time.sleep(0.001)  # a big file is parsed in the server: let the raters' requests have the interpreter
        values = {}
        for k, v in row.items():
            if k is None:
                continue
            try:  # NUL and lone surrogates replaced, oversized cells refused: the same on every database
                values[k] = clean_text(v, f"cell {k!r} on line {n}")
            except InputError as exc:
                problems.append(str(exc))
                values[k] = ""
        if not any(v.strip() for v in values.values()):
            problems.append(f"line {n}: the row is empty")
            continue
        for col in ("note", "question"):
            if col in columns and not values.get(col, "").strip():
                problems.append(f"line {n}: {col} is empty")
        for m in models:
            if not values.get(ANSWER_PREFIX + m, "").strip():
                problems.append(f"line {n}: {ANSWER_PREFIX}{m} is empty")
        ext_id = values.get("id", "").strip() or str(len(parsed.items) + 1)
        if ext_id in seen_ids:
            problems.append(f"line {n}: id {ext_id!r} is used twice")
        seen_ids.add(ext_id)
        parsed.items.append(StudyItemIn(note=values.get("note", ""), question=values.get("question", ""),
                                        task=normalize_task(values.get("task")), ext_id=ext_id,
                                        answers={m: values.get(ANSWER_PREFIX + m, "") for m in models}))
    if problems:
        raise StudyFileError(problems)
    return parsed


def parse_study_file(path: str | Path) -> ParsedStudy:
    """``parse_study_text`` on a .jsonl/.csv file (format from the extension), or on the rows of any other
    ``data_sources`` source (parquet, .gz, a ``datasets`` folder, a cached hub dataset id)."""
    p = Path(path)
    if p.exists() and p.is_file():
        check_upload(p.stat().st_size, "study file")
    if p.suffix.lower() not in (".jsonl", ".json", ".csv") and data_sources.kind_of(str(path)) != "missing":
        try:
            rows = data_sources.read_records(str(path))
        except data_sources.SourceError as exc:
            raise StudyFileError([str(exc)]) from None
        return parse_study_text("\n".join(json.dumps(r, ensure_ascii=False, default=str) for r in rows), "jsonl")
    fmt = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(p.suffix.lower(), p.suffix.lower().lstrip("."))
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise StudyFileError(["the file is not UTF-8 text"]) from None
    return parse_study_text(text, fmt)


def content_sha256(parsed: ParsedStudy) -> str:
    """A digest of a study's content (models and items), to spot the same file imported twice."""
    h = hashlib.sha256(json.dumps(parsed.models).encode())
    for k, it in enumerate(parsed.items):
        if k % YIELD_EVERY == YIELD_EVERY - 1:
            time.sleep(0.001)
        h.update(json.dumps([it.ext_id, it.note, it.question, it.task, sorted(it.answers.items())]).encode())
    return h.hexdigest()


def _key(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def order_key(study_id: int, rater: str, item_id: int) -> str:
    """The rater's own random (but repeatable) position of an item."""
    return _key("order", study_id, rater, item_id)


def pick_item(study_id: int, rater: str, candidates: list[tuple[int, int]]) -> int | None:
    """The next item for ``rater`` among ``(item_id, raters_so_far)``: least-covered first, then the rater's order."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (c[1], order_key(study_id, rater, c[0])))[0]


def label_answers(study_id: int, rater: str, item_id: int, answer_ids: list[int]) -> list[tuple[str, int]]:
    """``(label, answer_id)`` in display order: shuffled per rater and item, the same on every visit."""
    ordered = sorted(answer_ids, key=lambda a: _key("answer", study_id, rater, item_id, a))
    return list(zip(LABELS, ordered, strict=False))


# An assignment's states: open (handed to the rater) -> done (submitted; may be re-rated) or skipped (back to the
# pool). Open and done count towards the overlap; the storage checks these in the write transaction.
SUBMITTABLE = ("open", "done")


def refusal(action: str, status: str | None) -> str:
    """What to tell a rater whose ``action`` ("submit" or "skip") found the assignment in ``status``."""
    if status == "skipped":
        return ("You skipped this item (perhaps in another tab or window), so it went back to the other raters and "
                "these ratings were not saved. Press “Start / resume” for your next item.")
    if status == "done" and action == "skip":
        return ("This item was already submitted (perhaps in another tab or window), so it cannot be skipped. "
                "Press “Start / resume” for your next item.")
    return "This item is no longer assigned to you. Press “Start / resume” for your next item."
