"""Export ratings, comparisons, study ratings or DPO preference pairs to CSV or JSONL.

    python -m asclepius_ui.export --db sqlite:///ratings.db --what ratings --format csv --out ratings.csv
    python -m asclepius_ui.export --db URL --what dpo --format jsonl --out pairs.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from .errors import InputError, UserError

WHATS = ("ratings", "comparisons", "study", "dpo")

COLUMNS = {
    "ratings": ["id", "rater", "model", "task", "question", "answer", "score", "tags", "comment", "created_at",
                "note", "prompt", "model_revision", "precision", "template", "settings", "generation_seconds",
                "new_tokens", "started_at", "finished_at", "rubric_version", "source", "comparison_id", "side",
                "supersedes_id", "superseded", "uid"],
    "comparisons": ["id", "model_a", "model_b", "winner", "winner_model", "rater", "created_at", "task", "question",
                    "note", "prompt", "answer_a", "answer_b", "revision_a", "revision_b", "swapped", "settings",
                    "seconds_a", "seconds_b", "shown_at", "rubric_version", "uid"],
    "study": ["id", "study", "item", "rater", "model", "label", "task", "question", "answer", "score", "comment",
              "seconds_on_item", "created_at", "note", "rubric_version", "supersedes_id", "superseded", "findings"],
    "dpo": ["prompt", "chosen", "rejected", "chosen_model", "rejected_model", "comparison_id"],
}


def rows_for(storage, what: str, include_superseded: bool = False) -> list[dict]:
    """The rows of one export, with the export's column names (``model``, ``question``...)."""
    if what == "ratings":
        rows = [dict(r, model=r["model_id"], question=r["instruction"])
                for r in storage.ratings(include_superseded=include_superseded)]
    elif what == "comparisons":
        rows = [dict(r, question=r["instruction"]) for r in storage.comparisons()]
    elif what == "study":
        rows = [r for r in storage.study_ratings() if include_superseded or not r["superseded"]]
    elif what == "dpo":
        rows = storage.dpo_pairs()
    else:
        raise InputError(f"--what must be one of {', '.join(WHATS)}")
    return [{c: r.get(c) for c in COLUMNS[what]} for r in rows]


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Spreadsheets skip leading blanks and read the fullwidth signs as their ASCII twins: " =1+1", "\n=1+1" and
# "\uff1d1+1" start formulas too.
_FORMULA_CHARS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")


def neutralise(text: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula (OWASP: prefix ``'``), also when the
    formula sign follows spaces or line breaks, or is a fullwidth sign."""
    if text.startswith(FORMULA_START):
        return "'" + text
    stripped = text.lstrip(" \t\r\n\u3000\xa0")
    return "'" + text if stripped[:1] in _FORMULA_CHARS else text


def _cell(value) -> object:
    """CSV cells: lists as '; '-joined text, dicts as JSON, None as empty; text never starts a formula."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = "; ".join(map(str, value))
    elif isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    return neutralise(value) if isinstance(value, str) else value


def check_target(out: str | Path, force: bool = False, protect: list[Path] | tuple[Path, ...] = ()) -> Path:
    """The export path, or ``InputError`` saying why not: empty, a folder, the database, or existing without force."""
    if out is None or not str(out).strip():
        raise InputError("--out is empty: give the file to write, e.g. --out ratings.csv.")
    text = str(out)
    p = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or p.is_dir():
        raise InputError(f"--out {text} is a folder: give a file name inside it, e.g. {p / 'ratings.csv'}.")
    target = p.resolve()
    for db in protect:
        db = Path(db).expanduser().resolve()
        if target in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
                      db.with_name(db.name + "-journal")):
            raise InputError(f"--out {text} is the ratings database itself: choose another file.")
    if not target.parent.is_dir():
        raise InputError(f"--out {text}: the folder {target.parent} does not exist.")
    if target.exists() and not force:
        raise InputError(f"--out {text} already exists: choose another name, or add --force to replace it.")
    return target


def _write_csv(f, rows, columns: list[str]) -> None:
    w = csv.DictWriter(f, fieldnames=columns)
    w.writeheader()
    for r in rows:
        w.writerow({c: _cell(r.get(c)) for c in columns})


def _write_jsonl(f, rows, columns: list[str]) -> None:
    for r in rows:
        f.write(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n")


# The export formats: name (also the file suffix) -> writer(file, rows, columns). One writer each, used by the
# export command and the Admin download, the Batch page, ``eval.make_study`` and every other table this project writes.
FORMATS = {"csv": _write_csv, "jsonl": _write_jsonl}


def format_of(path: str | Path) -> str:
    """The export format a file name asks for (its suffix), or ``InputError``."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise InputError(f"{Path(path).name}: the file name must end in {', '.join('.' + f for f in FORMATS)}.")
    return fmt


def write_rows(rows: list[dict], columns: list[str] | None, fmt: str, out: str | Path, progress: bool = True) -> int:
    """Write ``rows`` to ``out``, readable by its owner only: written under a temporary name in the same folder
    first and renamed at the end, so a failed export leaves neither a half file nor a stray ``.part``. ``columns``
    ``None``: every key of the rows, in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}")
    out = Path(out)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)  # 0600
    tmp = Path(tmp_name)
    bar = tqdm(rows, desc=f"writing {out.name}", unit="row", disable=not progress, file=sys.stderr)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            FORMATS[fmt](f, bar, columns)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(rows)


def export(storage, what: str, fmt: str, out: str | Path, include_superseded: bool = False,
           progress: bool = True, force: bool = True) -> int:
    """Export one kind of row; returns how many rows were written. Never over the database itself."""
    target = check_target(out, force=force, protect=storage.database_files())
    return write_rows(rows_for(storage, what, include_superseded), COLUMNS[what], fmt, target, progress)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m asclepius_ui.export", description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///ratings.db")
    ap.add_argument("--what", choices=WHATS, required=True)
    ap.add_argument("--format", choices=list(FORMATS), default="csv")
    ap.add_argument("--out", required=True)
    ap.add_argument("--include-superseded", action="store_true", help="also rows replaced by a later rating")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists (never the database)")
    args = ap.parse_args(argv)
    from .storage import open_storage

    try:
        storage = open_storage(args.db, create=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        n = export(storage, args.what, args.format, args.out, args.include_superseded, force=args.force)
    except (UserError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        storage.close()
    print(f"wrote {n} {args.what} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
