"""Resumable JSONL output: read what an earlier (maybe interrupted) run wrote, then append one flushed row at a time."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def iter_jsonl(path: str | Path, on_bad_line: Callable[[int, json.JSONDecodeError], None] | None = None
               ) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) of each non-blank line; a line that is not valid JSON goes to ``on_bad_line``
    (which may raise) and is skipped."""
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                if on_bad_line is not None:
                    on_bad_line(n, exc)


def read_jsonl(path: str | Path, warn: bool = False) -> list[Any]:
    """The JSON values of a JSONL file, in order ([] when it does not exist).

    A line that is not valid JSON (a torn last line left by a crash) is skipped, with a warning on stderr when
    ``warn`` is set: the row it held is simply redone.
    """
    p = Path(path)
    if not p.exists():
        return []

    def warning(n: int, exc: json.JSONDecodeError) -> None:
        print(f"warning: {p}, line {n} is not valid JSON (interrupted write?); it will be redone.", file=sys.stderr)

    return [obj for _, obj in iter_jsonl(p, warning if warn else None)]


class JsonlAppender:
    """Appends one JSON object per line and flushes each, so an interrupted run loses at most one row.

    A torn last line from an earlier crash is closed with a newline first, so new rows start on a line of their own.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")
        if self.path.stat().st_size and not _ends_with_newline(self.path):
            self._f.write("\n")

    def write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
