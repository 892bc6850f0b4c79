"""Batch answers with the app's own engine: ``python -m eval.generate --model M --input q.jsonl --out a.jsonl``.

Rows need ``note``, ``question`` and ``task`` (``id`` optional). Each output row keeps the input fields and adds
``answer``, ``model``, ``template``, ``precision``, ``backend``, ``preset``, ``new_tokens`` and ``seconds``.
Decoding defaults to the authors' evaluation setting (``--preset paper``); any backend works (``--backend``,
``--base-url``). A row whose id is already in the output file is skipped, so an interrupted run picks up where
it stopped.

A row whose prompt plus the new tokens does not fit the model's context (long MIMIC discharge summaries on a
2,048-token model) is handled by ``--long-notes``: ``fail`` (default) reports it as failed; ``truncate-note`` cuts
the note's end on token boundaries until it fits (the output keeps the whole note and adds ``note_cut_tokens``);
``as-reference`` generates anyway, past the context, as the authors' ``src/evaluate.py`` did (transformers backend
only). The run ends with the count of such rows.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from asclepius_ui.batch import answer_rows
from asclepius_ui.data_sources import add_source_arguments, source_options
from asclepius_ui.engines import PRESETS, GenerationSettings, add_engine_arguments, load_engine, options_from_args
from asclepius_ui.errors import UserError
from asclepius_ui.jsonl import JsonlAppender

from .rows import InputError, read_done, read_rows, row_id

REQUIRED = ("note", "question", "task")
LONG_NOTES = ("fail", "truncate-note", "as-reference")
LONG_NOTE_DONE = {"fail": "failed", "truncate-note": "answered with the note cut to fit",
                  "as-reference": "answered past the context, as the reference generated"}


@dataclass
class RunSummary:
    """What a run did; ``long_rows`` did not fit the context and were handled by ``long_notes``."""

    done_before: int
    written: int
    failed: list[tuple[str, str]]
    long_rows: int = 0
    long_notes: str = "fail"

    def long_line(self) -> str:
        return (f"{self.long_rows} row(s) longer than the context (prompt + new tokens): "
                f"{LONG_NOTE_DONE[self.long_notes]} (--long-notes {self.long_notes}).")


def long_note_action(prompt_tokens: int | None, max_new_tokens: int, context_length: int, mode: str) -> str | None:
    """What to do with one row: ``None`` when its prompt plus ``max_new_tokens`` fits ``context_length`` (or cannot be
    counted: the server decides), else ``mode`` (one of ``LONG_NOTES``)."""
    if mode not in LONG_NOTES:
        raise InputError(f"--long-notes must be one of {', '.join(LONG_NOTES)}, not {mode!r}.")
    if prompt_tokens is None or prompt_tokens + max_new_tokens <= context_length:
        return None
    return mode


def plan_long_rows(engine, rows: list[dict], settings: GenerationSettings,
                   mode: str) -> tuple[list[dict], dict[str, dict], int]:
    """The rows to answer, the original of each row whose note was cut (by id), and the context ``as-reference``
    needs (0: the engine's own is enough)."""
    out: list[dict] = []
    originals: dict[str, dict] = {}
    needed = 0
    for row in rows:
        note, question = str(row["note"]), str(row["question"])
        n = engine.count_tokens(engine.prompt(note, question))
        action = long_note_action(n, settings.max_new_tokens, engine.context_length, mode)
        if action == "truncate-note":
            try:
                cut = engine.truncate_note(note, question, settings.max_new_tokens)
            except UserError:  # not even the question fits: the row fails with the context message
                cut = None
            if cut is not None:
                rid = row_id(row)
                originals[rid] = {**row, "note_cut_tokens": cut.cut_tokens}
                row = {**row, "id": rid, "note": cut.kept}
        elif action == "as-reference":
            needed = max(needed, n + settings.max_new_tokens)
        if action is not None:
            originals.setdefault(row_id(row), row)
        out.append(row)
    return out, originals, needed


@contextlib.contextmanager
def context_at_least(engine, tokens: int):
    """``as-reference``: the transformers engine's context limit raised to ``tokens`` for this run (the model's
    positions run on past it, as they did for the authors), then put back."""
    before = engine.context_length
    if tokens <= before:
        yield
        return
    if engine.backend != "transformers":
        raise InputError("--long-notes as-reference generates past the context, which only the transformers "
                         f"backend can (this is {engine.backend}); use fail or truncate-note.")
    engine.context_length = tokens
    try:
        yield
    finally:
        engine.context_length = before


def model_name(engine) -> str:
    """The name used for ``answer_<model>`` columns: the registry name of a known model, else the folder or id."""
    spec = getattr(engine, "spec", None)
    if spec is not None and getattr(spec, "known", False):
        return spec.name
    return Path(str(engine.model_id).rstrip("/")).name or str(engine.model_id)


def output_row(row: dict, engine, name: str, result, settings: GenerationSettings) -> dict:
    """An input row plus the answer and how it was produced."""
    out = dict(row)
    out["id"] = row_id(row)
    out.update(answer=result.text, model=name, template=engine.template, precision=engine.precision,
               backend=engine.backend, preset=settings.preset, new_tokens=result.new_tokens,
               seconds=round(result.seconds, 4))
    if result.notice:  # e.g. the server cut the answer short
        out["notice"] = result.notice
    return out


def generate_rows(engine, rows: list[dict], out_path: str | Path, settings: GenerationSettings | None = None,
                  batch_size: int = 1, name: str | None = None, concurrency: int = 1,
                  progress: bool = True, long_notes: str = "fail") -> RunSummary:
    """Answer every row not yet in ``out_path`` and append the results there as they finish.

    ``batch_size`` > 1 runs ``generate_batch`` on backends that batch (prompts sorted by length to limit padding);
    a backend that serves concurrent requests (an OpenAI-compatible server) answers ``concurrency`` at a time.
    ``long_notes`` (``LONG_NOTES``) says what happens to a row too long for the context.
    """
    settings = settings or GenerationSettings()
    name = name or model_name(engine)
    done = read_done(out_path)
    seen: set[str] = set()
    todo: list[dict] = []
    for row in rows:
        rid = row_id(row)
        if rid not in done and rid not in seen:
            seen.add(rid)
            todo.append(row)
    todo, long_rows, needed = plan_long_rows(engine, todo, settings, long_notes)
    failed: list[tuple[str, str]] = []
    written = 0
    with context_at_least(engine, needed), JsonlAppender(out_path) as out, \
            tqdm(total=len(todo), desc=f"answers ({name})", unit="row", disable=not progress) as bar:
        for answered in answer_rows(engine, todo, settings, batch_size=batch_size, concurrency=concurrency):
            if answered.result is None:
                failed.append((row_id(answered.row), answered.error or "not answered"))
            else:
                row = long_rows.get(row_id(answered.row), answered.row)
                out.write(output_row(row, engine, name, answered.result, settings))
                written += 1
            bar.update(1)
    return RunSummary(done_before=len(done), written=written, failed=failed, long_rows=len(long_rows),
                      long_notes=long_notes)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.generate", description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, help="questions with note, question, task (id optional): .jsonl, .csv, "
                                                  ".parquet (.gz too), a `datasets` folder or a hub dataset id")
    add_source_arguments(p, prefix="input-")
    p.add_argument("--out", required=True, help="answers .jsonl (appended to; existing ids are skipped)")
    p.add_argument("--name", help="model name for the answer_<model> column (default: registry name or folder)")
    add_engine_arguments(p)
    p.add_argument("--remote-model", help="same as --model, for a model served at --base-url")
    d = p.add_argument_group("decoding")
    d.add_argument("--preset", choices=list(PRESETS), default="paper",
                   help="paper: the authors' evaluation (5 beams, sampling, temperature 1, 400 new tokens); "
                        "greedy: the app's interactive default")
    d.add_argument("--max-new-tokens", type=int, help="override the preset's 400")
    d.add_argument("--batch-size", type=int, default=1, help="prompts per generate call (transformers on a GPU)")
    d.add_argument("--concurrency", type=int, default=4, help="parallel requests to an OpenAI-compatible server")
    d.add_argument("--long-notes", choices=LONG_NOTES, default="fail",
                   help="a row whose prompt + new tokens exceed the context: fail it (default), cut the note's end "
                        "to fit (truncate-note), or generate past the context as the authors did (as-reference; "
                        "transformers backend). The count is printed at the end")
    p.add_argument("--limit", type=int, help="answer only the first N rows")
    p.add_argument("--no-progress", action="store_true")
    return p


def make_engine(args: argparse.Namespace):
    """The engine the flags describe, through the one backend registry."""
    if args.api_key:
        raise InputError("--api-key is not taken on the command line (it would end up in shell history and process "
                         "lists): put the key in an environment variable and name it with --api-key-env.")
    model = args.model or args.remote_model
    if not model:
        raise InputError("--model is required (a Hugging Face id, a local folder, a .gguf file, or with --base-url "
                         "the served model's name).")
    return load_engine(options_from_args(args, model))


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    overrides = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    return GenerationSettings.from_preset(args.preset, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if (args.max_new_tokens is not None and args.max_new_tokens < 1) or args.batch_size < 1:
            raise InputError("--max-new-tokens and --batch-size must be at least 1.")
        rows = read_rows(args.input, REQUIRED, **source_options(args, prefix="input-"))
        if args.limit is not None:
            rows = rows[: args.limit]
        if not rows:
            raise InputError(f"{args.input} has no rows.")
        settings = settings_from_args(args)
        engine = make_engine(args)
        engine.check_settings(settings)  # e.g. the paper preset's beams on a backend without beam search
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for notice in engine.notices:
        print(f"note: {notice}", file=sys.stderr)
    try:
        summary = generate_rows(engine, rows, args.out, settings, batch_size=args.batch_size, name=args.name,
                                concurrency=args.concurrency, progress=not args.no_progress,
                                long_notes=args.long_notes)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary.written} answers written to {args.out} ({summary.done_before} already there, "
          f"{len(summary.failed)} failed).", file=sys.stderr)
    for rid, error in summary.failed[:20]:
        print(f"  failed {rid}: {error}", file=sys.stderr)
    print(summary.long_line(), file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
