"""MIMIC-III preparation for Asclepius-R: discharge summaries for pretraining, instruction pairs joined by ROW_ID.

Reads PhysioNet's ``NOTEEVENTS.csv(.gz)`` in chunks (never whole: it is about 4 GB unpacked) and the Asclepius-R
``mimiciii_discharge.csv`` (``ROW_ID``, ``Question``, ``Answer``, ``Task``). Writes, readable by ``train.pretrain`` and
``train.finetune`` as they are:

* ``notes.jsonl``: ``row_id``, ``note`` for every ``CATEGORY == "Discharge summary"`` row not excluded, with the
  de-identification brackets rewritten as the reference did (``train.deid``; ``convert_deid=False`` keeps them);
* ``pairs.jsonl``: ``row_id``, ``note``, ``question``, ``answer``, ``task`` in the pairs file's order;
* ``counts.json``: the counts printed at the end (no text).

By default the reference's list of evaluation notes (``REFERENCE_EXCLUDE``: 517 ROW_IDs from the authors'
``preprocessing/mimiciii_filter_index.txt``) is left out, notes and pairs alike; another list or none can be given.

Credentialed data: nothing here touches the network; files are created readable by their owner only (0600).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from asclepius_ui.data_sources import SourceError, resolve_columns
from asclepius_ui.errors import InputError
from train.deid import convert_deid_tags

DISCHARGE = "discharge summary"
NOTE_COLUMNS = ("ROW_ID", "CATEGORY", "TEXT")
# The reference's evaluation notes (ROW_IDs, with the address they were taken from).
REFERENCE_EXCLUDE = Path(__file__).with_name("mimiciii_filter_index.json")


class MimicError(InputError):
    """A MIMIC input that cannot be used; the message says which file and why."""


@dataclass
class MimicCounts:
    """What ``prepare_mimic`` read, kept and left out."""

    noteevents_rows: int = 0
    discharge_summaries: int = 0
    notes_excluded: int = 0
    notes_kept: int = 0
    pairs_read: int = 0
    pairs_joined: int = 0
    pairs_missing_row_id: int = 0  # blank ROW_ID, or no NOTEEVENTS row with that ROW_ID
    pairs_not_discharge: int = 0  # the ROW_ID is a note of another category
    pairs_excluded: int = 0  # the ROW_ID is in --exclude-row-ids (notes held out for evaluation)
    exclude_list: str = ""  # where the excluded ROW_IDs came from ("" = none)
    exclude_listed: int = 0
    deid_converted: bool = True
    deid_brackets: int = 0  # de-identification brackets rewritten in the kept notes
    deid_unknown: int = 0  # brackets of a shape the reference had no rule for (left as they are)
    tasks: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        tasks = ", ".join(f"{t} {n}" for t, n in sorted(self.tasks.items(), key=lambda kv: -kv[1])) or "none"
        excluded = (f"excluded {self.notes_excluded} evaluation note(s) of the {self.exclude_listed} ROW_IDs in "
                    f"{self.exclude_list}" if self.exclude_list else "excluded none (--no-exclude)")
        deid = (f"de-identification brackets: {self.deid_brackets} rewritten as the reference did"
                + (f", {self.deid_unknown} of an unknown shape kept as they are" if self.deid_unknown else "")
                if self.deid_converted else "de-identification brackets: kept as MIMIC has them (--keep-deid-tags)")
        return [
            f"NOTEEVENTS rows read: {self.noteevents_rows}",
            f"discharge summaries: {self.discharge_summaries} (excluded {self.notes_excluded}, "
            f"kept {self.notes_kept})",
            excluded,
            deid,
            f"pairs read: {self.pairs_read}; joined {self.pairs_joined}; left out: "
            f"{self.pairs_missing_row_id} ROW_ID missing, {self.pairs_not_discharge} not a discharge summary, "
            f"{self.pairs_excluded} excluded",
            f"tasks: {tasks}",
        ]


def read_row_ids(path: str | Path) -> set[int]:
    """Row ids: one integer a line (blank lines and ``#`` comments ignored), e.g. the reference's
    ``mimiciii_filter_index.txt``; or a ``.json`` file holding a list of them or ``{"row_ids": [...]}`` (as
    ``REFERENCE_EXCLUDE``)."""
    if str(path).endswith(".json"):
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise MimicError(f"{path}: not JSON ({exc}).") from None
        ids = data.get("row_ids") if isinstance(data, dict) else data
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise MimicError(f"{path}: expected a list of ROW_IDs (integers) or {{\"row_ids\": [...]}}.")
        return set(ids)
    ids = set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                ids.add(int(line.strip()))
            except ValueError:
                raise MimicError(f"{path}, line {n}: expected a ROW_ID (an integer), got {line.strip()[:40]!r}.") \
                    from None
    return ids


def _as_id(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def read_pairs(path: str | Path) -> list[dict]:
    """The pairs file as rows with ``row_id`` (int or None), ``question``, ``answer``, ``task``."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise MimicError(f"{path}: cannot be read as CSV ({exc}).") from None
    try:
        cols = resolve_columns(list(df.columns), ["id", "question", "answer"], {"id": _find(df.columns, "ROW_ID")},
                               optional=["task"], where=str(path))
    except SourceError as exc:
        raise MimicError(str(exc)) from None
    return [{"row_id": _as_id(r[cols["id"]]), "question": r[cols["question"]], "answer": r[cols["answer"]],
             "task": r[cols["task"]].strip() if "task" in cols else ""} for r in df.to_dict(orient="records")]


def _find(columns, name: str) -> str:
    return next((c for c in columns if c.upper() == name), name)


def iter_noteevents(path: str | Path, chunksize: int = 20_000) -> Iterator[pd.DataFrame]:
    """``NOTEEVENTS`` in chunks of ``chunksize`` rows with the columns ``ROW_ID``, ``CATEGORY``, ``TEXT``."""
    try:
        reader = pd.read_csv(path, chunksize=chunksize, dtype=str, keep_default_na=False,
                             usecols=lambda c: c.upper() in NOTE_COLUMNS)
        for chunk in reader:
            chunk.columns = [c.upper() for c in chunk.columns]
            missing = [c for c in NOTE_COLUMNS if c not in chunk.columns]
            if missing:
                raise MimicError(f"{path}: not a NOTEEVENTS file (no {', '.join(missing)} column).")
            yield chunk
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise MimicError(f"{path}: cannot be read as CSV ({exc}).") from None


def _list_name(path: str | Path | None) -> str:
    if path is None:
        return ""
    if Path(path).resolve() == REFERENCE_EXCLUDE.resolve():
        return "the reference's list (preprocessing/mimiciii_filter_index.txt)"
    return str(path)


def _private_writer(path: Path):
    """A text file only its owner can read (created 0600, truncated)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def prepare_mimic(noteevents: str | Path, pairs: str | Path, out_dir: str | Path,
                  exclude_row_ids: str | Path | None = REFERENCE_EXCLUDE, chunksize: int = 20_000,
                  progress: bool = True, convert_deid: bool = True) -> MimicCounts:
    """Write ``notes.jsonl``, ``pairs.jsonl`` and ``counts.json`` to ``out_dir``; return the counts.

    ``exclude_row_ids``: a file of ROW_IDs to leave out (default: the reference's evaluation notes; ``None``: none).
    ``convert_deid``: rewrite the de-identification brackets as the reference did (``train.deid``).
    """
    for p in (noteevents, pairs, exclude_row_ids):
        if p is not None and not Path(p).is_file():
            raise MimicError(f"{p}: no such file.")
    excluded = read_row_ids(exclude_row_ids) if exclude_row_ids else set()
    pair_rows = read_pairs(pairs)
    wanted = {r["row_id"] for r in pair_rows if r["row_id"] is not None}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    counts = MimicCounts(pairs_read=len(pair_rows), exclude_listed=len(excluded), deid_converted=convert_deid,
                         exclude_list=_list_name(exclude_row_ids))
    category: dict[int, bool] = {}  # wanted ROW_ID -> is a discharge summary
    texts: dict[int, str] = {}  # wanted, kept discharge summaries
    tmp_notes = out / "notes.jsonl.partial"
    with _private_writer(tmp_notes) as f, tqdm(desc="NOTEEVENTS", unit=" rows", disable=not progress) as bar:
        for chunk in iter_noteevents(noteevents, chunksize):
            counts.noteevents_rows += len(chunk)
            bar.update(len(chunk))
            for rid_s, cat, text in zip(chunk["ROW_ID"], chunk["CATEGORY"], chunk["TEXT"], strict=True):
                rid = _as_id(rid_s)
                is_dc = cat.strip().lower() == DISCHARGE
                if rid in wanted:
                    category[rid] = is_dc
                if not is_dc:
                    continue
                counts.discharge_summaries += 1
                if rid in excluded:
                    counts.notes_excluded += 1
                    continue
                counts.notes_kept += 1
                if convert_deid:
                    converted = convert_deid_tags(text)
                    text = converted.text
                    counts.deid_brackets += converted.brackets
                    counts.deid_unknown += converted.unknown
                f.write(json.dumps({"row_id": rid, "note": text}, ensure_ascii=False) + "\n")
                if rid in wanted:
                    texts[rid] = text
    tmp_notes.replace(out / "notes.jsonl")
    tasks: Counter[str] = Counter()
    tmp_pairs = out / "pairs.jsonl.partial"
    with _private_writer(tmp_pairs) as f:
        for r in pair_rows:
            rid = r["row_id"]
            if rid is None or rid not in category:
                counts.pairs_missing_row_id += 1
            elif not category[rid]:
                counts.pairs_not_discharge += 1
            elif rid in excluded:
                counts.pairs_excluded += 1
            else:
                counts.pairs_joined += 1
                tasks[r["task"]] += 1
                f.write(json.dumps({"row_id": rid, "note": texts[rid], "question": r["question"],
                                    "answer": r["answer"], "task": r["task"]}, ensure_ascii=False) + "\n")
    tmp_pairs.replace(out / "pairs.jsonl")
    counts.tasks = dict(tasks)
    with _private_writer(out / "counts.json") as f:
        json.dump(asdict(counts), f, indent=2)
    return counts
