"""Where rows of notes and questions come from: a local file, a folder saved by ``datasets``, or a hub dataset id.

One reader for ``train.pretrain``, ``train.finetune``, ``eval.generate`` and the study importer:

* a local ``.csv``, ``.tsv``, ``.jsonl``/``.json`` or ``.parquet`` file, optionally compressed (``.gz``, ``.bz2``,
  ``.xz``, ``.zst``); read with pandas/pyarrow into memory, so no copy of the rows lands in a cache folder;
* a folder written by ``datasets.Dataset.save_to_disk`` (or a ``DatasetDict``; ``split`` picks one), or a folder of
  data files such as a downloaded hub repository (``datasets`` finds the files);
* a Hugging Face dataset id (``owner/name``) with ``split`` and ``revision``, loaded with ``datasets`` from its
  cache; offline and not cached, the message says so and what to do.

Column names are matched to the canonical ``note``, ``question``, ``answer``, ``task`` (and ``id``) by
``resolve_columns``: an explicit mapping wins, else the first known alias present (case-insensitive), which covers the
released ``starmpcc/Asclepius-Synthetic-Clinical-Notes`` (``note``, ``question``, ``answer``, ``task``) and the
PhysioNet Asclepius-R pairs (``Question``, ``Answer``, ``Task``).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

# Canonical column -> aliases tried in order (matched case-insensitively) when no explicit column is given.
ALIASES: dict[str, tuple[str, ...]] = {
    "note": ("note", "text", "discharge_summary"),
    "question": ("question", "instruction", "query"),
    "answer": ("answer", "response", "output"),
    "task": ("task", "category", "task_type"),
    "id": ("id", "item_id"),
}
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".ndjson": "jsonl",
                  ".parquet": "parquet", ".pq": "parquet"}
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class SourceError(InputError):
    """A dataset source that cannot be read; the message names it and says what to do."""


@dataclass(frozen=True)
class Source:
    """A dataset source and, for hub ids and ``DatasetDict`` folders, the split and revision to read."""

    path: str
    split: str = "train"
    revision: str | None = None

    def describe(self) -> str:
        extra = f" (split {self.split}" + (f", revision {self.revision})" if self.revision else ")")
        return self.path + (extra if kind_of(self.path) in ("hub", "saved", "folder") else "")


def table_format(path: str | Path) -> tuple[str | None, str | None]:
    """``(format, compression suffix)`` of a file name: ``notes.csv.gz`` -> ``("csv", ".gz")``."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    comp = None
    if suffixes and (suffixes[-1] in COMPRESSIONS or suffixes[-1] == ".zst"):
        comp = suffixes.pop()
    return (TABLE_SUFFIXES.get(suffixes[-1]) if suffixes else None), comp


def kind_of(path: str) -> str:
    """``file``, ``saved`` (``save_to_disk`` folder), ``folder`` (data files), ``hub`` (dataset id) or ``missing``."""
    p = Path(path).expanduser()
    if p.is_file():
        return "file"
    if p.is_dir():
        markers = ("dataset_info.json", "state.json", "dataset_dict.json")
        return "saved" if any((p / m).is_file() for m in markers) else "folder"
    if HUB_ID.match(path) and table_format(path)[0] is None and not path.startswith((".", "~")):
        return "hub"
    return "missing"


def read_records(source: Source | str, *, split: str = "train", revision: str | None = None) -> list[dict[str, Any]]:
    """Every row of ``source`` as a dict (CSV values are strings, empty cells ``""``). Raises ``SourceError``."""
    if isinstance(source, str):
        source = Source(source, split=split, revision=revision)
    kind = kind_of(source.path)
    if kind == "missing":
        raise SourceError(f"{source.path}: no such file or folder (and not a Hugging Face dataset id "
                          "like owner/name).")
    if kind == "file":
        rows = _read_file(Path(source.path).expanduser())
    else:
        rows = _read_with_datasets(source, kind)
    if not rows:
        raise SourceError(f"{source.describe()}: no rows.")
    return rows


def _open_text(p: Path, comp: str | None):
    if comp == ".zst":
        try:
            import zstandard
        except ImportError:
            raise SourceError(f"{p}: reading .zst needs the zstandard package (pip install zstandard).") from None
        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(p.open("rb")), encoding="utf-8")
    opener = COMPRESSIONS.get(comp)
    return opener(p, "rt", encoding="utf-8") if opener else p.open(encoding="utf-8-sig")


def _read_file(p: Path) -> list[dict[str, Any]]:
    fmt, comp = table_format(p)
    if fmt is None:
        raise SourceError(f"{p}: expected a .csv, .tsv, .jsonl, .json or .parquet file (optionally .gz, .bz2, "
                          ".xz, .zst), a folder saved by `datasets`, or a hub dataset id.")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            if comp:
                raise SourceError(f"{p}: parquet files compress internally; give the .parquet file itself.")
            return pq.read_table(p).to_pylist()
        with _open_text(p, comp) as f:
            if fmt in ("csv", "tsv"):
                import pandas as pd

                df = pd.read_csv(f, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False)
                return df.to_dict(orient="records")
            if fmt == "json":
                text = f.read()
                stripped = text.lstrip()
                if stripped.startswith("["):
                    rows = json.loads(text)
                    _check_objects(p, rows)
                    return rows
                return _jsonl_lines(p, text.splitlines())
            return _jsonl_lines(p, f)
    except SourceError:
        raise
    except RecursionError:
        raise SourceError(f"{p}: JSON nested too deeply to be a list of records.") from None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"{p}: could not be read as {fmt}{' ' + comp if comp else ''} ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow/pandas parse errors have many types; all mean a bad file
        raise SourceError(f"{p}: could not be read as {fmt} ({type(exc).__name__}: {exc}).") from None


def _jsonl_lines(p: Path, lines: Iterable[str]) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{p}, line {n}: not valid JSON ({exc.msg}).") from None
        except RecursionError:
            raise SourceError(f"{p}, line {n}: JSON nested too deeply to be a record.") from None
        if not isinstance(obj, dict):
            raise SourceError(f"{p}, line {n}: expected a JSON object, got {type(obj).__name__}.")
        rows.append(obj)
    return rows


def _check_objects(p: Path, rows: Any) -> None:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SourceError(f"{p}: a .json file must hold a list of objects (or one object a line).")


def _read_with_datasets(source: Source, kind: str) -> list[dict[str, Any]]:
    import datasets

    try:
        if kind == "saved":
            ds = datasets.load_from_disk(source.path)
        else:
            ds = datasets.load_dataset(source.path, split=source.split, revision=source.revision)
    except (ConnectionError, FileNotFoundError) as exc:
        if kind != "hub":
            raise SourceError(f"{source.describe()}: could not be read ({exc}).") from None
        raise SourceError(
            f"{source.describe()}: this dataset is not cached on this machine and the Hugging Face Hub cannot be "
            f"reached (offline). Download it once where there is network, with the same HF_HOME: "
            f"python -c \"import datasets; datasets.load_dataset('{source.path}', split='{source.split}')\"; "
            f"or download its files and pass the local file or folder instead.") from None
    except Exception as exc:  # noqa: BLE001 - datasets raises many types (bad split, bad revision, bad files)
        raise SourceError(f"{source.describe()}: could not be loaded ({type(exc).__name__}: {exc}).") from None
    if isinstance(ds, datasets.DatasetDict):
        if source.split not in ds:
            raise SourceError(f"{source.path}: no split {source.split!r}; splits are {', '.join(ds)}.")
        ds = ds[source.split]
    return ds.to_list()


def resolve_columns(available: Sequence[str], wanted: Sequence[str], given: Mapping[str, str] | None = None,
                    optional: Sequence[str] = (), where: str = "the data") -> dict[str, str]:
    """Map each canonical name in ``wanted`` (required) and ``optional`` to a column of ``available``.

    ``given`` (canonical -> column) wins over the aliases. A required name that cannot be found, or a given column
    that does not exist, raises ``SourceError`` listing the columns there are.
    """
    given = {k: v for k, v in (given or {}).items() if v}
    lower = {c.lower(): c for c in reversed(list(available))}
    found: dict[str, str] = {}
    problems = []
    for name in [*wanted, *optional]:
        if name in given:
            if given[name] in available:
                found[name] = given[name]
            else:
                problems.append(f"column {given[name]!r} (for {name}) not found")
            continue
        hit = next((lower[a.lower()] for a in ALIASES.get(name, (name,)) if a.lower() in lower), None)
        if hit is not None:
            found[name] = hit
        elif name in wanted:
            flag = f"--{name}-column"
            problems.append(f"no {name} column ({' or '.join(ALIASES.get(name, (name,)))}; or name it with {flag})")
    if problems:
        raise SourceError(f"{where}: {'; '.join(problems)}. Columns are: {', '.join(available) or 'none'}.")
    return found


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys in first-seen order."""
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def canonical_rows(rows: Sequence[Mapping[str, Any]], mapping: Mapping[str, str],
                   keep_other: bool = True) -> list[dict[str, Any]]:
    """Rows with the mapped columns renamed to their canonical names (other columns kept unless told)."""
    renamed = {v: k for k, v in mapping.items()}
    out = []
    for r in rows:
        row = {renamed[k]: v for k, v in r.items() if k in renamed}
        if keep_other:
            row.update({k: v for k, v in r.items() if k not in renamed and k not in row})
        out.append(row)
    return out


def unique_texts(texts: Iterable[Any]) -> list[str]:
    """Non-empty strings in first-seen order, each once (the synthetic dataset repeats a note per question)."""
    seen: dict[str, None] = {}
    for t in texts:
        if isinstance(t, str) and t.strip():
            seen.setdefault(t, None)
    return list(seen)


def add_source_arguments(parser, columns: Sequence[str] = ("note", "question", "task"), prefix: str = "") -> None:
    """``--<prefix>split``, ``--<prefix>revision`` and one ``--<name>-column`` flag per canonical column.

    ``prefix`` (e.g. ``"input-"``) keeps the split/revision flags apart from a model's own ``--revision``.
    """
    group = parser.add_argument_group("input source (a file, a `datasets` folder or a hub dataset id)")
    group.add_argument(f"--{prefix}split", default="train", help="split of a hub dataset or a DatasetDict folder")
    group.add_argument(f"--{prefix}revision", help="revision (branch, tag or commit) of a hub dataset")
    for name in columns:
        group.add_argument(f"--{name}-column", help=f"column holding the {name} "
                                                    f"(default: {', '.join(ALIASES.get(name, (name,)))})")


def source_options(args, prefix: str = "") -> dict[str, Any]:
    """Keyword arguments (``split``, ``revision``, ``columns``) for ``read_rows``-style readers from those flags."""
    attr = prefix.replace("-", "_")
    columns = {k[:-len("_column")]: v for k, v in vars(args).items() if k.endswith("_column") and v}
    return {"split": getattr(args, f"{attr}split"), "revision": getattr(args, f"{attr}revision"), "columns": columns}
