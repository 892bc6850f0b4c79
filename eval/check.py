"""Check every answer of a generations file against its note: ``python -m eval.check answers.jsonl``.

Any file ``eval.generate`` writes (rows with ``note`` and ``answer``, and ``model``/``task``) or a wide file with
``answer_<model>`` columns (``eval.make_study`` input, merged answers) works, in any format ``eval.rows`` reads.
Prints the share of answers with a finding per model and task, by kind (numbers, drugs, sides, negation,
certainty, unsupported sentences), and with ``--out`` writes each row with its findings (``check`` or
``check_<model>``). No model and no network: it costs nothing, so run it before paying for an LLM judge.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from asclepius_ui.claims import KINDS, check_answer
from asclepius_ui.errors import InputError
from asclepius_ui.items import ANSWER_PREFIX

from .rows import answer_models, read_rows, write_rows

CHECK_PREFIX = "check_"
FINDING_KINDS = [k for k in KINDS if k != "unsupported"]


def answers_of(row: dict) -> list[tuple[str, str, str]]:
    """(model, answer, output column) of each answer in a long or wide row."""
    if "answer" in row:
        return [(str(row.get("model") or "model"), str(row.get("answer") or ""), "check")]
    return [(m, str(row.get(ANSWER_PREFIX + m) or ""), CHECK_PREFIX + m) for m in answer_models(row)]


def check_rows(rows: list[dict], progress: bool = True) -> tuple[list[dict], pd.DataFrame]:
    """Each row with its checks added, and one record per answer (model, task, kinds found) for the summary."""
    if not rows:
        raise InputError("The file has no rows.")
    if not any(answers_of(r) for r in rows):
        raise InputError("No answers to check: rows need an 'answer' column (eval.generate output) or "
                         "'answer_<model>' columns.")
    out, records = [], []
    for i, row in enumerate(tqdm(rows, desc="checking answers", unit="row", disable=not progress), start=1):
        if not isinstance(row.get("note"), str) or not row["note"].strip():
            raise InputError(f"Row {i} has no note to check its answer against.")
        row = dict(row)
        for model, answer, column in answers_of(row):
            check = check_answer(row["note"], answer)
            row[column] = check.as_dict()
            kinds = set(check.kinds)
            records.append({"model": model, "task": str(row.get("task") or ""), "any": bool(kinds - {"unsupported"}),
                            **{k: k in kinds for k in KINDS}})
        out.append(row)
    return out, pd.DataFrame(records, columns=["model", "task", "any", *KINDS])


def faithfulness(records: pd.DataFrame, by_task: bool = True) -> pd.DataFrame:
    """Per model (and task): answers, the share with any finding, and the share with each kind."""
    keys = ["model", "task"] if by_task else ["model"]
    if not len(records):
        return pd.DataFrame(columns=[*keys, "answers", "any finding", *KINDS])
    g = records.groupby(keys, sort=True)
    table = g[["any", *KINDS]].mean().rename(columns={"any": "any finding"})
    table.insert(0, "answers", g.size())
    return table.reset_index()


def faithfulness_of(rows: list[dict]) -> pd.DataFrame:
    """The faithfulness table (model x task) of rows already checked by ``check_rows`` (their ``check`` fields)."""
    records = []
    for row in rows:
        for model, _, column in answers_of(row):
            stored = row.get(column)
            if isinstance(stored, dict):
                kinds = set(stored.get("kinds", {}))
                records.append({"model": model, "task": str(row.get("task") or ""),
                                "any": bool(kinds - {"unsupported"}), **{k: k in kinds for k in KINDS}})
    return faithfulness(pd.DataFrame(records, columns=["model", "task", "any", *KINDS]))


def format_table(table: pd.DataFrame) -> str:
    """The table as aligned text, shares as percentages."""
    shown = table.copy()
    for c in ["any finding", *KINDS]:
        if c in shown:
            shown[c] = [f"{v:.0%}" for v in shown[c]]
    return shown.to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.check", description=__doc__.split("\n")[0])
    p.add_argument("input", help="a generations file (.jsonl, .csv, parquet, ...) with note and answer columns")
    p.add_argument("--out", help="write each row with its findings here (.jsonl or .csv)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        rows = read_rows(a.input, ("note",))
        checked, records = check_rows(rows, progress=not a.no_progress)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.out:
        write_rows(Path(a.out), checked)
    print(f"{len(records)} answers in {len(rows)} rows: share of answers with a finding, by kind")
    print(format_table(faithfulness(records)))
    if a.out:
        print(f"findings written to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
