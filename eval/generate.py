"""Batch answers with the app's own engine: ``python -m eval.generate --model M --input q.jsonl --out a.jsonl``.

Rows need ``note``, ``question`` and ``task`` (``id`` optional). Each output row keeps the input fields and adds
``answer``, ``model``, ``template``, ``precision``, ``backend``, ``preset``, ``new_tokens`` and ``seconds``.
Decoding defaults to the authors' evaluation setting (``--preset paper``); any backend works (``--backend``,
``--base-url``). A row whose id is already in the output file is skipped, so an interrupted run picks up where
it stopped.
"""

from __future__ import annotations

import argparse
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


@dataclass
class RunSummary:
    """What a run did."""

    done_before: int
    written: int
    failed: list[tuple[str, str]]


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
    return out


def generate_rows(engine, rows: list[dict], out_path: str | Path, settings: GenerationSettings | None = None,
                  batch_size: int = 1, name: str | None = None, concurrency: int = 1,
                  progress: bool = True) -> RunSummary:
    """Answer every row not yet in ``out_path`` and append the results there as they finish.

    ``batch_size`` > 1 runs ``generate_batch`` on backends that batch (prompts sorted by length to limit padding);
    a backend that serves concurrent requests (an OpenAI-compatible server) answers ``concurrency`` at a time.
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
    failed: list[tuple[str, str]] = []
    written = 0
    with tqdm(total=len(todo), desc=f"answers ({name})", unit="row", disable=not progress) as bar, \
            JsonlAppender(out_path) as out:
        for answered in answer_rows(engine, todo, settings, batch_size=batch_size, concurrency=concurrency):
            if answered.result is None:
                failed.append((row_id(answered.row), answered.error or "not answered"))
            else:
                out.write(output_row(answered.row, engine, name, answered.result, settings))
                written += 1
            bar.update(1)
    return RunSummary(done_before=len(done), written=written, failed=failed)


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
    summary = generate_rows(engine, rows, args.out, settings, batch_size=args.batch_size, name=args.name,
                            concurrency=args.concurrency, progress=not args.no_progress)
    print(f"{summary.written} answers written to {args.out} ({summary.done_before} already there, "
          f"{len(summary.failed)} failed).", file=sys.stderr)
    for rid, error in summary.failed[:20]:
        print(f"  failed {rid}: {error}", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
