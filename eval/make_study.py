"""Answers of two or more models -> the app's study import file: ``python -m eval.make_study --answers ... --out``.

The study file has one item per row: ``id``, ``note``, ``question``, ``task`` and one ``answer_<model>`` column
per model (JSONL or CSV by the extension of ``--out``). It is also the wide input of ``eval.judge``.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass

from asclepius_ui.tasks import normalize_task

from .rows import ANSWER_PREFIX, InputError, answer_models, merge_answers, read_rows, row_id, write_rows


@dataclass
class StudyBuild:
    """The study rows and what was left out (items with an empty answer)."""

    rows: list[dict]
    models: list[str]
    dropped_empty: list[str]


def study_rows(wide: list[dict], models: list[str] | None = None, tasks: list[str] | None = None,
               sample: int | None = None, seed: int = 0) -> StudyBuild:
    """Shape wide rows into study rows: chosen models only, optional task filter and seeded random sample.

    Items where a chosen model's answer is empty are dropped (a rater cannot rate an empty answer).
    """
    if not wide:
        raise InputError("No items to put in the study.")
    available = answer_models(wide[0])
    models = list(models or available)
    unknown = [m for m in models if m not in available]
    if unknown:
        raise InputError(f"No answers for {', '.join(unknown)}; the input has {', '.join(available)}.")
    if len(models) < 2:
        raise InputError(f"A study needs answers from at least two models, got {len(models)}.")
    wanted = {normalize_task(t) for t in tasks or ()}
    rows = [r for r in wide if not tasks or normalize_task(r.get("task")) in wanted]
    if tasks and not rows:
        raise InputError(f"No items with task {', '.join(tasks)}.")
    out, dropped = [], []
    for r in rows:
        rid = row_id(r)
        answers = {m: r.get(ANSWER_PREFIX + m) for m in models}
        if any(a is None or not str(a).strip() for a in answers.values()):
            dropped.append(rid)
            continue
        out.append({"id": rid, "note": str(r.get("note", "")), "question": str(r.get("question", "")),
                    "task": normalize_task(r.get("task")), **{ANSWER_PREFIX + m: str(a) for m, a in answers.items()}})
    if sample is not None and sample < len(out):
        picked = sorted(random.Random(seed).sample(range(len(out)), sample))
        out = [out[i] for i in picked]
    return StudyBuild(out, models, dropped)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.make_study", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--answers", nargs="+", help="answer files from eval.generate, one per model (>= 2)")
    src.add_argument("--wide", help="a file that already has answer_<model> columns")
    p.add_argument("--out", required=True, help="study file to write (.jsonl or .csv)")
    p.add_argument("--models", nargs="+", help="keep only these models")
    p.add_argument("--tasks", nargs="+", help="keep only items of these tasks")
    p.add_argument("--sample", type=int, help="a random sample of N items")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    from asclepius_ui.studies import StudyFileError, parse_study_file

    args = build_parser().parse_args(argv)
    try:
        if not args.out.lower().endswith((".jsonl", ".csv")):
            raise InputError("--out must end in .jsonl or .csv (the formats the app imports).")
        if args.answers:
            if len(args.answers) < 2:
                raise InputError("Give answer files of at least two models.")
            wide = merge_answers([read_rows(f, ("note", "question", "answer")) for f in args.answers])
        else:
            wide = read_rows(args.wide, ("note", "question"))
        build = study_rows(wide, args.models, args.tasks, args.sample, args.seed)
        if not build.rows:
            raise InputError("Every item has an empty answer for some model: nothing to write.")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_rows(args.out, build.rows)
    try:
        parse_study_file(args.out)  # the app's own importer must accept what we wrote
    except StudyFileError as exc:
        print(f"error: the app would reject {args.out}:\n{exc}", file=sys.stderr)
        return 1
    if build.dropped_empty:
        print(f"warning: {len(build.dropped_empty)} item(s) left out for an empty answer: "
              f"{', '.join(build.dropped_empty[:10])}", file=sys.stderr)
    print(f"{len(build.rows)} items with answers of {', '.join(build.models)} written to {args.out}.",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
