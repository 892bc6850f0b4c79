"""LLM-as-judge over an OpenAI-compatible endpoint: ``python -m eval.judge --input wide.jsonl --out judged.jsonl``.

Input rows have ``note``, ``question`` and one ``answer_<model>`` column per model. For each row the judge sees
one prompt with the note, the instruction and all answers, anonymous and labelled A, B, C… in a seeded shuffled
order. By default the protocol is the paper's (``--protocol paper``): the judge works out the answer itself, grades
each response on the 4-point rubric, and puts the N scores on the first line of its reply; temperature 0 and
2048 tokens, as the authors ran GPT-4. Output rows keep the input and add, per pass, ``order``, ``score_<model>``,
``raw_reply`` and ``parse_error`` (a reply that cannot be parsed, has the wrong number of scores or a score out of
range is asked once more, then leaves those scores missing, never 0). ``--parse reference`` reads replies as the
authors' script did instead (the first N whitespace-separated values of the whole reply; every model 0 when that
fails; no second asking), for reproducing the paper's tables. Rows already in the output (by id and pass) are
skipped, so a run can be resumed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openai
from tqdm import tqdm

from asclepius_ui import endpoints
from asclepius_ui.endpoints import EndpointSettings
from asclepius_ui.jsonl import JsonlAppender
from asclepius_ui.rubric import RUBRIC_VERSION
from asclepius_ui.tasks import normalize_task

from .judge_prompt import PARSE_RULES, PLACEHOLDERS, PROTOCOLS, agent_order, build_judge_messages, parse_with
from .rows import (
    ANSWER_PREFIX,
    SCORE_PREFIX,
    InputError,
    answer_models,
    merge_answers,
    read_done,
    read_rows,
    row_id,
)

PASSES = ("forward", "reverse")
PAPER_JUDGE = "gpt-4-0314"


@dataclass
class JudgeOptions:
    """How the judge is asked (the endpoint is ``EndpointSettings``): the paper's protocol and sampling by default.

    ``template`` is a user prompt (``--prompt-file``) used verbatim with its placeholders filled. ``parse`` is the
    rule that turns a reply into scores (``judge_prompt.PARSE_RULES``); ``reference`` never asks again.
    """

    protocol: str = "paper"
    parse: str = "strict"
    template: str | None = None
    temperature: float = 0.0
    max_tokens: int = 2048
    seed: int = 0
    parse_retries: int = 1


@dataclass
class JudgeSummary:
    """What a run did: rows written, rows whose reply could not be parsed, rows that failed (not written)."""

    written: int = 0
    skipped: int = 0
    parse_errors: int = 0
    reasked: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    fatal: str | None = None


def judge_key(row: dict) -> str:
    return f"{row_id(row)}|{row.get('pass', 'forward')}"


def make_client(settings: EndpointSettings):
    """The async client for the judge's endpoint; ``InputError`` when there is none."""
    try:
        return endpoints.make_client(settings)
    except endpoints.NoEndpointError as exc:
        raise InputError(str(exc)) from None


def judged_row(row: dict, models: list[str], order: list[str], pass_name: str, reply: str, attempts: int,
               settings: EndpointSettings, options: JudgeOptions, parsed=None) -> dict:
    """The output row: input fields, the agent order, each model's score (or None) and the raw reply."""
    parsed = parsed or parse_with(options.parse, reply, len(order))
    out = dict(row)
    out["id"] = row_id(row)
    if "task" in row:
        out["task"] = normalize_task(row.get("task"))
    out.update({"pass": pass_name, "order": order, "judge_model": settings.model, "rubric_version": RUBRIC_VERSION,
                "protocol": "prompt-file" if options.template is not None else options.protocol,
                "parse": options.parse, "seed": options.seed, "attempts": attempts, "raw_reply": reply,
                "parse_error": parsed.error})
    by_model = {m: parsed.scores[i] for i, m in enumerate(order, start=1)}
    for m in models:
        out[SCORE_PREFIX + m] = by_model[m]
    return out


def check_rows(rows: list[dict], models: list[str] | None) -> list[str]:
    """The models to judge; every row must have note, question and an answer for each."""
    if not rows:
        raise InputError("The input has no rows.")
    models = models or answer_models(rows[0])
    if len(models) < 2:
        raise InputError(f"Need answer_<model> columns for at least two models, found {models or 'none'}.")
    for i, row in enumerate(rows, start=1):
        missing = [c for c in ("note", "question") if row.get(c) is None]
        missing += [ANSWER_PREFIX + m for m in models if row.get(ANSWER_PREFIX + m) is None]
        if missing:
            raise InputError(f"Row {i} ({row_id(row)}): missing {', '.join(missing)}.")
    return models


async def judge_rows_async(rows: list[dict], out_path: str | Path, settings: EndpointSettings,
                           options: JudgeOptions | None = None, models: list[str] | None = None,
                           reverse_pass: bool = False, client=None, progress: bool = True) -> JudgeSummary:
    """Judge every (row, pass) not yet in ``out_path``, ``settings.concurrency`` requests at a time."""
    options = options or JudgeOptions()
    models = check_rows(rows, models)
    done = read_done(out_path, key=judge_key)
    client = client or make_client(settings)
    limiter = endpoints.limiter_for(settings)
    passes = PASSES if reverse_pass else PASSES[:1]
    jobs = []
    for row in rows:
        forward = agent_order(models, row_id(row), options.seed)
        for p in passes:
            key = f"{row_id(row)}|{p}"
            if key in done:
                continue
            jobs.append((row, p, forward if p == "forward" else forward[::-1]))
    summary = JudgeSummary(skipped=len(done))
    semaphore = asyncio.Semaphore(max(1, settings.concurrency))
    bar = tqdm(total=len(jobs), desc=f"judge ({settings.model})", unit="call", disable=not progress)

    async def ask(messages: list[dict]) -> tuple[str, int]:
        reply = await endpoints.complete(client, messages, settings, max_tokens=options.max_tokens,
                                         temperature=options.temperature, limiter=limiter)
        return reply.text, reply.attempts

    with JsonlAppender(out_path) as out:
        async def one(row: dict, pass_name: str, order: list[str]) -> None:
            async with semaphore:
                if summary.fatal:
                    return
                messages = build_judge_messages(str(row["note"]), str(row["question"]),
                                                [str(row[ANSWER_PREFIX + m]) for m in order],
                                                options.protocol, options.template)
                try:
                    reply, attempts = await ask(messages)
                    parsed = parse_with(options.parse, reply, len(order))
                    for _ in range(options.parse_retries if options.parse == "strict" else 0):
                        if parsed.error is None:
                            break
                        summary.reasked += 1
                        again, more = await ask(messages)
                        attempts += more
                        reparsed = parse_with(options.parse, again, len(order))
                        if reparsed.error is None or reparsed.valid() > parsed.valid():
                            reply, parsed = again, reparsed
                except endpoints.FatalAPIError as exc:
                    summary.fatal = f"The endpoint refused the request ({type(exc.cause).__name__}): {exc.cause}"
                    return
                except (TimeoutError, openai.OpenAIError, *endpoints.MALFORMED) as exc:
                    summary.failed.append((f"{row_id(row)}|{pass_name}", f"{type(exc).__name__}: {exc}"))
                    bar.update(1)
                    return
                result = judged_row(row, models, order, pass_name, reply, attempts, settings, options, parsed)
                out.write(result)
                summary.written += 1
                summary.parse_errors += result["parse_error"] is not None
                bar.update(1)

        try:
            await asyncio.gather(*(one(*job) for job in jobs))
        finally:
            bar.close()
    return summary


def judge_rows(rows: list[dict], out_path: str | Path, settings: EndpointSettings,
               options: JudgeOptions | None = None, **kwargs) -> JudgeSummary:
    """Synchronous wrapper around ``judge_rows_async`` (in a worker thread when this one runs an event loop)."""
    def run() -> JudgeSummary:
        return asyncio.run(judge_rows_async(rows, out_path, settings, options, **kwargs))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def score_models(row: dict) -> list[str]:
    return [k[len(SCORE_PREFIX):] for k in row if k.startswith(SCORE_PREFIX)]


def consistency(judged: list[dict]) -> dict:
    """Agreement between the forward and the reversed pass, per model and overall, and mean score by position.

    Per model: ``n`` rows scored in both passes, ``exact`` agreement rate, ``mad`` (mean absolute difference),
    and the mean score in each pass.
    """
    by_pass: dict[str, dict[str, dict]] = {p: {} for p in PASSES}
    for r in judged:
        by_pass.setdefault(r.get("pass", "forward"), {})[row_id(r)] = r
    models: list[str] = []
    for r in judged:
        models.extend(m for m in score_models(r) if m not in models)
    per_model: dict[str, dict] = {}
    all_f, all_r = [], []
    for m in models:
        pairs = [(f[SCORE_PREFIX + m], by_pass["reverse"][rid][SCORE_PREFIX + m])
                 for rid, f in by_pass["forward"].items() if rid in by_pass["reverse"]]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        f = np.array([a for a, _ in pairs], dtype=float)
        b = np.array([b for _, b in pairs], dtype=float)
        all_f.extend(f)
        all_r.extend(b)
        per_model[m] = _agreement(f, b)
    position: dict[int, list[float]] = {}
    for r in judged:
        for i, m in enumerate(r.get("order", []), start=1):
            s = r.get(SCORE_PREFIX + m)
            if s is not None:
                position.setdefault(i, []).append(s)
    return {"per_model": per_model, "overall": _agreement(np.array(all_f), np.array(all_r)),
            "mean_by_position": {i: float(np.mean(v)) for i, v in sorted(position.items())}}


def _agreement(f: np.ndarray, r: np.ndarray) -> dict:
    n = int(len(f))
    if n == 0:
        return {"n": 0, "exact": None, "mad": None, "mean_forward": None, "mean_reverse": None}
    return {"n": n, "exact": float(np.mean(f == r)), "mad": float(np.mean(np.abs(f - r))),
            "mean_forward": float(f.mean()), "mean_reverse": float(r.mean())}


def format_consistency(report: dict) -> str:
    """The consistency report as a small text table."""
    lines = ["model                          n   exact    MAD   fwd mean  rev mean"]
    for name, a in [*report["per_model"].items(), ("(all)", report["overall"])]:
        if not a["n"]:
            lines.append(f"{name:<28} {0:>4}      -      -         -         -")
            continue
        lines.append(f"{name:<28} {a['n']:>4}  {a['exact']:.3f}  {a['mad']:.3f}     {a['mean_forward']:.3f}"
                     f"     {a['mean_reverse']:.3f}")
    pos = ", ".join(f"{i}: {v:.2f}" for i, v in report["mean_by_position"].items())
    lines.append(f"mean score by agent position: {pos}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    placeholders = ", ".join(f"{{{k}}} ({v})" for k, v in PLACEHOLDERS.items())
    p = argparse.ArgumentParser(prog="python -m eval.judge", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="wide rows (.jsonl/.csv): note, question, answer_<model> columns")
    src.add_argument("--answers", nargs="+", help="long answer files from eval.generate, one per model")
    p.add_argument("--out", required=True, help="judged .jsonl (appended to; done rows are skipped)")
    p.add_argument("--models", nargs="+", help="judge only these models (default: every answer_<model> column)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="paper",
                   help="paper: labels A, B…, answer first, N scores on the first line (default); "
                        "lines: Agent 1..N and one 'Agent i: s' line each")
    p.add_argument("--prompt-file", help=f"use this judge prompt verbatim; placeholders: {placeholders}")
    p.add_argument("--parse", choices=PARSE_RULES, default="strict",
                   help="strict: the first line must hold exactly N scores from 1 to 4, asked once more, else missing "
                        "(default); reference: as the authors' script, the first N whitespace-separated values of "
                        "the whole reply, every model 0 when that fails (to reproduce the paper's tables)")
    p.add_argument("--max-tokens", type=int, default=2048, help="reply token limit (the paper: 2048)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (the paper: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-row agent order")
    p.add_argument("--reverse-pass", action="store_true", help="judge again in reversed order; report consistency")
    p.add_argument("--consistency-out", help="where to write the consistency report (default: OUT.consistency.json)")
    p.add_argument("--limit", type=int, help="judge only the first N rows")
    p.add_argument("--no-progress", action="store_true")
    endpoints.add_endpoint_arguments(p, model_required=True, model_aliases=("--judge-model",))
    p.epilog = (f"The paper's judge was {PAPER_JUDGE} (OpenAI, since retired: see docs/evaluation.md on "
                "comparability); pin a dated model snapshot for reproducible scores.")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = endpoints.settings_from_args(args)
        template = Path(args.prompt_file).read_text(encoding="utf-8") if args.prompt_file else None
        options = JudgeOptions(protocol=args.protocol, template=template, temperature=args.temperature,
                               max_tokens=args.max_tokens, seed=args.seed, parse=args.parse)
        if template is not None:  # fail before any request when a placeholder is missing
            build_judge_messages("n", "q", ["a", "b"], options.protocol, template)
        if args.input:
            rows = read_rows(args.input, ("note", "question"))
        else:
            rows = merge_answers([read_rows(f, ("note", "question", "answer")) for f in args.answers])
        if args.limit is not None:
            rows = rows[: args.limit]
        check_rows(rows, args.models)
        client = make_client(settings)
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = judge_rows(rows, args.out, settings, options, models=args.models, reverse_pass=args.reverse_pass,
                         client=client, progress=not args.no_progress)
    if summary.fatal:
        print(f"error: {summary.fatal}", file=sys.stderr)
        return 2
    kept_as = "kept as missing" if args.parse == "strict" else "scored 0 for every model (reference rule)"
    print(f"{summary.written} judgements written to {args.out} ({summary.skipped} already there, "
          f"{summary.reasked} replies asked again, {summary.parse_errors} unparseable replies {kept_as}, "
          f"{len(summary.failed)} failed).", file=sys.stderr)
    for key, error in summary.failed[:20]:
        print(f"  failed {key}: {error}", file=sys.stderr)
    if args.reverse_pass:
        report = consistency(list(read_done(args.out, key=judge_key).values()))
        target = Path(args.consistency_out or f"{args.out}.consistency.json")
        target.write_text(json.dumps(report, indent=2))
        print(format_consistency(report))
        print(f"consistency report written to {target}", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
