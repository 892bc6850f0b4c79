"""Reading and writing evaluation rows (JSONL or CSV), row ids, and joining answer files into wide rows."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from asclepius_ui import data_sources, export
from asclepius_ui.errors import InputError
from asclepius_ui.items import ANSWER_PREFIX, item_id
from asclepius_ui.jsonl import iter_jsonl, read_jsonl

SCORE_PREFIX = "score_"


def row_id(row: dict) -> str:
    """The row's ``id`` if it has one, else a short hash of its note and question."""
    given = row.get("id")
    if given not in (None, ""):
        return str(given)
    return item_id(str(row.get("note", "")), str(row.get("question", "")))


def read_rows(path: str | Path, required: Iterable[str] = (), *, split: str = "train", revision: str | None = None,
              columns: Mapping[str, str] | None = None) -> list[dict]:
    """Rows of a ``.jsonl`` (one JSON object a line) or ``.csv`` file, or of any ``asclepius_ui.data_sources`` source
    (parquet, compressed files, ``datasets`` folders, hub ids with ``split``/``revision``), checked for ``required``
    columns; ``columns`` (or the known aliases) name the source's columns for them.

    Raises ``InputError`` naming the file and, for JSONL, the line of the first bad row.
    """
    p = Path(path)
    kind, (fmt, comp) = data_sources.kind_of(str(path)), data_sources.table_format(p)
    if kind == "missing":
        raise InputError(f"Input file not found: {p}")
    if kind != "file" or comp or fmt in ("parquet", "tsv"):
        rows = data_sources.read_records(str(path), split=split, revision=revision)
    else:
        rows = _read_csv(p) if p.suffix.lower() == ".csv" else _read_jsonl(p)
    required = list(required)
    rows = _canonical(rows, required, columns)
    for i, row in enumerate(rows, start=1):
        missing = [c for c in required if c not in row or row[c] is None]
        if missing:
            where = f"row {i}" if p.suffix.lower() == ".csv" else f"line {row.get('_line', i)}"
            raise InputError(f"{p}, {where}: missing column(s) {', '.join(missing)} "
                             f"(each row needs {', '.join(required)}).")
    for row in rows:
        row.pop("_line", None)
    return rows


def _canonical(rows: list[dict], required: list[str], columns: Mapping[str, str] | None) -> list[dict]:
    """Rename the columns standing for ``required`` names (given, or known aliases) when they differ."""
    try:
        mapping = data_sources.resolve_columns(data_sources.columns_of(rows), required, columns)
    except data_sources.SourceError:
        if columns:
            raise
        return rows  # the per-row check below names the missing columns
    if all(k == v for k, v in mapping.items()):
        return rows
    return data_sources.canonical_rows(rows, mapping)


def _read_jsonl(p: Path) -> list[dict]:
    def bad_json(n: int, exc: json.JSONDecodeError) -> None:
        raise InputError(f"{p}, line {n}: not valid JSON ({exc.msg}).") from None

    rows = []
    for n, obj in iter_jsonl(p, bad_json):
        if not isinstance(obj, dict):
            raise InputError(f"{p}, line {n}: expected a JSON object, got {type(obj).__name__}.")
        obj["_line"] = n
        rows.append(obj)
    return rows


def _read_csv(p: Path) -> list[dict]:
    try:
        with p.open(encoding="utf-8", newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read as CSV ({exc}).") from None


def read_done(path: str | Path, key=row_id) -> dict[str, dict]:
    """Rows already in an output JSONL file, by ``key``; a torn last line (from a crash) is ignored with a warning."""
    return {key(obj): obj for obj in read_jsonl(path, warn=True)}


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Write rows in the export format the suffix names (``.csv``: cells never start a formula), JSONL for any
    other suffix, with the export's writers; columns are the union in first-seen order."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = p.suffix.lower().lstrip(".")
    export.write_rows(rows, None, fmt if fmt in export.FORMATS else "jsonl", p, progress=False)


def answer_models(row: dict) -> list[str]:
    """Model names of a wide row's ``answer_<model>`` columns, in column order."""
    return [k[len(ANSWER_PREFIX):] for k in row if k.startswith(ANSWER_PREFIX) and len(k) > len(ANSWER_PREFIX)]


def merge_answers(files: dict[str, list[dict]] | list[list[dict]]) -> list[dict]:
    """Join long answer files (rows with note, question, task, answer, model) into wide rows.

    Rows are matched by ``row_id``; each model's ``answer`` becomes ``answer_<model>``. Only items that
    every model answered are kept, in the order of the first file. Raises ``InputError`` on a clash.
    """
    groups = list(files.values()) if isinstance(files, dict) else list(files)
    names = list(files) if isinstance(files, dict) else []
    by_model: dict[str, dict[str, dict]] = {}
    order: list[str] = []
    for i, rows in enumerate(groups):
        for row in rows:
            model = str(row.get("model") or (names[i] if names else ""))
            if not model:
                raise InputError("An answer row has no 'model' field; name the model of each answer file.")
            if "answer" not in row:
                raise InputError(f"An answer row of {model} has no 'answer' field.")
            rid = row_id(row)
            if rid in by_model.setdefault(model, {}):
                raise InputError(f"{model} answers item {rid} twice.")
            by_model[model][rid] = row
            if i == 0:
                order.append(rid)
    models = list(by_model)
    if len(models) < 2:
        raise InputError(f"Need answers from at least two models, got {len(models)}: {', '.join(models) or 'none'}.")
    wide = []
    for rid in order:
        if not all(rid in by_model[m] for m in models):
            continue
        first = by_model[models[0]][rid]
        row = {"id": rid, "note": first.get("note", ""), "question": first.get("question", ""),
               "task": first.get("task", "")}
        for m in models:
            row[ANSWER_PREFIX + m] = by_model[m][rid]["answer"]
        wide.append(row)
    return wide


def iter_batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]
