"""Synthetic training data through any OpenAI-compatible chat-completions endpoint.

Three stages, each a resumable JSONL file (a restart skips rows already written):

    python -m train.synth notes --input pmc_patients.csv --out notes.jsonl --base-url URL --model M
    python -m train.synth instructions --input notes.jsonl --out instructions.jsonl --base-url URL --model M
    python -m train.synth answers --input instructions.jsonl --out pairs.jsonl --base-url URL --model M

Requests run concurrently (``--concurrency``) under requests/min and tokens/min limits, with retries and
exponential backoff (honouring ``Retry-After``) on 429, 5xx, connection errors and malformed replies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from tqdm.auto import tqdm

from asclepius_ui.api_calls import (
    FatalAPIError,
    RateLimiter,
    RetryPolicy,
    Usage,
    chat_with_retries,
    make_client,
)
from asclepius_ui.jsonl import JsonlAppender, read_jsonl
from asclepius_ui.tasks import TASKS

SEEDS_PATH = Path(__file__).with_name("seeds.json")
TASK_KEYS = [k for k in TASKS if k != "free"]

# ---------------------------------------------------------------- prompts (pure)

NOTE_SYSTEM = "You are an experienced hospital physician who writes discharge summaries."

NOTE_RULES = [
    "Use only facts stated in the case report. Do not add any finding, test result, medication, dose, date, name "
    "or outcome that the case report does not contain.",
    "Where a formal standard term has an everyday equivalent that clinicians use on the ward, prefer the everyday "
    "wording.",
    "Use the abbreviations clinicians commonly use, and do not define or expand them.",
    "Organise the summary under the usual headings (for example: Admission Diagnosis, History of Present Illness, "
    "Hospital Course, Discharge Diagnosis, Discharge Medications, Follow-up), leaving out headings the case report "
    "gives nothing for.",
    "Terse fragments and minor grammatical slips, as in real notes, are acceptable.",
    "If the patient was not discharged (for example died, was transferred or is still in hospital), write a "
    "summary of the hospital course instead of a discharge plan.",
    "Write the summary only: no preamble, no comments about these rules, no mention of the case report.",
]

NOTE_TEMPLATE = (
    "Turn the case report below into the discharge summary that the treating team would have written.\n"
    "Follow these rules:\n" + "\n".join(f"{i}. {r}" for i, r in enumerate(NOTE_RULES, 1)) + "\n\nCase report:\n{case}"
)

INSTRUCTION_SYSTEM = "You write instructions that healthcare professionals give to a clinical language model."

INSTRUCTION_TEMPLATE = """Task type: {label}.
Here are example instructions of this type:
{examples}

Discharge summary:
{note}

Write one new instruction of the type "{label}" for the discharge summary above. \
It must be brief, different from the examples, and answerable from this discharge summary alone. \
Reply with the instruction only."""

ANSWER_SYSTEM = "You are a careful clinician answering questions about a patient's discharge summary."

ANSWER_TEMPLATE = """Discharge summary:
{note}

Instruction:
{question}

Answer the instruction accurately and concisely, using only information in the discharge summary. \
If the summary does not contain what is asked, say so briefly."""


def load_seeds(path: str | Path = SEEDS_PATH) -> dict[str, list[str]]:
    """Hand-written seed instructions: 5 per task."""
    seeds = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [t for t in TASK_KEYS if len(seeds.get(t, [])) < 3]
    if missing:
        raise ValueError(f"{path}: need at least 3 seeds for task(s) {', '.join(missing)}")
    return seeds


def note_messages(case_report: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": NOTE_SYSTEM},
            {"role": "user", "content": NOTE_TEMPLATE.format(case=case_report.strip())}]


def instruction_messages(note: str, task: str, seeds: Sequence[str], pool: Sequence[str],
                         rng: random.Random) -> list[dict[str, str]]:
    """3 random seeds plus up to 2 earlier generated instructions for ``task``, then the note."""
    examples = rng.sample(list(seeds), 3) + rng.sample(list(pool), min(2, len(pool)))
    text = INSTRUCTION_TEMPLATE.format(label=TASKS[task].label, note=note.strip(),
                                       examples="\n".join(f"- {e}" for e in examples))
    return [{"role": "system", "content": INSTRUCTION_SYSTEM}, {"role": "user", "content": text}]


def answer_messages(note: str, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": ANSWER_SYSTEM},
            {"role": "user", "content": ANSWER_TEMPLATE.format(note=note.strip(), question=question.strip())}]


def clean_instruction(reply: str) -> str:
    """The first non-empty line, without list markers, labels or surrounding quotes."""
    for line in reply.strip().splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line).strip()
        line = re.sub(r"^(?:new\s+)?instruction\s*:\s*", "", line, flags=re.I).strip().strip("\"'").strip()
        if line:
            return line
    return ""


def clean_note(reply: str) -> str:
    """Strip a surrounding markdown code fence, if any."""
    text = reply.strip()
    m = re.fullmatch(r"```[a-zA-Z]*\n(.*?)\n?```", text, flags=re.S)
    return (m.group(1) if m else text).strip()


_AI_TALK = re.compile(r"\b(?:as an ai|an ai (?:language )?model|a language model|as a language model|"
                      r"i am an ai|i'm an ai|large language model|ai assistant)\b", re.I)
_REFUSAL = re.compile(r"^\s*(?:i'?m sorry|i am sorry|sorry,|i apologi[sz]e|unfortunately,? i|"
                      r"i (?:cannot|can't|can not|am unable to|'m unable to|won't|will not))", re.I)


def reject_reason(answer: str) -> str | None:
    """Why an answer is dropped (AI talk, a refusal, ends in '?', empty), or ``None`` to keep it."""
    a = answer.strip()
    if not a:
        return "empty"
    if _AI_TALK.search(a):
        return "mentions being an AI or language model"
    if _REFUSAL.search(a):
        return "refusal"
    if a.endswith("?"):
        return "ends with a question mark"
    return None


# ---------------------------------------------------------------- rate limiting and requests


@dataclass
class ClientSettings:
    base_url: str
    model: str
    api_key: str = "EMPTY"
    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 120.0
    temperature: float = 0.7
    max_tokens: int = 1024
    price_in: float = 0.0
    price_out: float = 0.0


async def chat(client: openai.AsyncOpenAI, messages: list[dict[str, str]], s: ClientSettings, limiter: RateLimiter,
               usage: Usage, rng: random.Random) -> str:
    """One completion's text, retried with backoff; raises ``FatalAPIError`` or the last error."""
    policy = RetryPolicy(s.max_retries, s.backoff_base, s.backoff_max, retry_after_cap=s.backoff_max)
    reply = await chat_with_retries(client, messages, s.model, max_tokens=s.max_tokens, policy=policy, rng=rng,
                                    temperature=s.temperature, limiter=limiter, usage=usage, require_content=True)
    return reply.text


# ---------------------------------------------------------------- resumable stages


@dataclass
class Job:
    key: str
    row: dict[str, Any]


def rejected_path(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.stem + ".rejected.jsonl")


@dataclass
class StageResult:
    written: int
    rejected: int
    skipped: int
    usage: Usage


async def run_jobs(jobs: Sequence[Job], build: Callable[[Job], list[dict[str, str]]],
                   finish: Callable[[Job, str], tuple[dict[str, Any] | None, str | None]], out: str | Path,
                   s: ClientSettings, key_field: str = "key", desc: str = "synth",
                   client: openai.AsyncOpenAI | None = None, seed: int = 0) -> StageResult:
    """Run ``jobs`` not yet in ``out`` (or its rejected file) with bounded concurrency.

    ``build`` makes the messages at dispatch time; ``finish`` turns the reply into a row to keep (or ``None``)
    and a rejection reason (or ``None``).
    """
    done = {r.get(key_field) for r in read_jsonl(out)} | {r.get(key_field) for r in read_jsonl(rejected_path(out))}
    todo = [j for j in jobs if j.key not in done]
    usage = Usage()
    client = client or make_client(s.base_url, s.api_key, timeout=s.timeout)
    limiter = RateLimiter(s.rpm, s.tpm)
    sink, rejects = JsonlAppender(out), JsonlAppender(rejected_path(out))
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for j in todo:
        queue.put_nowait(j)
    rng = random.Random(seed)
    counts = {"written": 0, "rejected": 0}
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, unit="row")

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                reply = await chat(client, build(job), s, limiter, usage, rng)
            except FatalAPIError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the run
                usage.failed += 1
                bar.write(f"{job.key}: failed after retries: {type(exc).__name__}: {exc}")
            else:
                row, reason = finish(job, reply)
                if row is not None:
                    sink.write({key_field: job.key, **row})
                    counts["written"] += 1
                else:
                    rejects.write({key_field: job.key, **job.row, "reply": reply, "reason": reason})
                    counts["rejected"] += 1
            bar.update(1)
            bar.set_postfix(tokens=usage.prompt_tokens + usage.completion_tokens, retries=usage.retries)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, s.concurrency))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        bar.close()
        sink.close()
        rejects.close()
        await client.close()
    return StageResult(counts["written"], counts["rejected"], len(jobs) - len(todo), usage)


# ---------------------------------------------------------------- the three stages


def read_input(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV, JSONL or parquet file as dicts."""
    from train.data import read_table

    return list(read_table(path))


async def synth_notes(rows: Iterable[dict[str, Any]], out: str | Path, s: ClientSettings,
                      id_column: str = "patient_uid", text_column: str = "text", **kw) -> StageResult:
    """Case reports -> discharge summaries: rows ``{"note_id", "note", "model"}``."""
    jobs = [Job(str(r[id_column]), {"case": r[text_column]}) for r in rows if str(r.get(text_column) or "").strip()]

    def finish(job: Job, reply: str):
        note = clean_note(reply)
        return ({"note": note, "model": s.model}, None) if note else (None, "empty note")

    return await run_jobs(jobs, lambda j: note_messages(j.row["case"]), finish, out, s, key_field="note_id",
                          desc="notes", **kw)


def assign_tasks(note_id: str, per_note: int, tasks: Sequence[str] = TASK_KEYS, seed: int = 0) -> list[str]:
    """``per_note`` distinct tasks for a note, reproducible from its id."""
    rng = random.Random(f"{seed}:{note_id}")
    return rng.sample(list(tasks), min(per_note, len(tasks)))


async def synth_instructions(rows: Iterable[dict[str, Any]], out: str | Path, s: ClientSettings,
                             tasks_per_note: int = 1, tasks: Sequence[str] = TASK_KEYS,
                             seeds: dict[str, list[str]] | None = None, seed: int = 0, **kw) -> StageResult:
    """Notes -> one new instruction per (note, task), bootstrapped from seeds plus a growing pool per task."""
    seeds = seeds or load_seeds()
    pool: dict[str, list[str]] = defaultdict(list)
    for r in read_jsonl(out):
        if r.get("task") in seeds and r.get("question"):
            pool[r["task"]].append(r["question"])
    jobs = [Job(f"{r['note_id']}:{t}", {"note_id": str(r["note_id"]), "task": t, "note": r["note"]})
            for r in rows for t in assign_tasks(str(r["note_id"]), tasks_per_note, tasks, seed)]
    rng = random.Random(seed)

    def build(job: Job):
        t = job.row["task"]
        return instruction_messages(job.row["note"], t, seeds[t], pool[t], rng)

    def finish(job: Job, reply: str):
        q = clean_instruction(reply)
        if not q:
            return None, "empty instruction"
        pool[job.row["task"]].append(q)
        return {**job.row, "question": q, "model": s.model}, None

    return await run_jobs(jobs, build, finish, out, s, desc="instructions", seed=seed, **kw)


async def synth_answers(rows: Iterable[dict[str, Any]], out: str | Path, s: ClientSettings, **kw) -> StageResult:
    """Instructions -> answers, filtered by ``reject_reason`` (dropped rows go to ``*.rejected.jsonl``)."""
    jobs = [Job(str(r.get("key") or f"{r['note_id']}:{r['task']}"),
                {k: r[k] for k in ("note_id", "task", "note", "question")}) for r in rows]

    def finish(job: Job, reply: str):
        answer = reply.strip()
        reason = reject_reason(answer)
        return (None, reason) if reason else ({**job.row, "answer": answer, "model": s.model}, None)

    return await run_jobs(jobs, lambda j: answer_messages(j.row["note"], j.row["question"]), finish, out, s,
                          desc="answers", **kw)


# ---------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["notes", "instructions", "answers"])
    p.add_argument("--input", required=True, help="notes: case-report CSV/JSONL/parquet; later stages: JSONL")
    p.add_argument("--out", required=True, help="JSONL output (appended to; finished rows are skipped)")
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"))
    p.add_argument("--model", required=True)
    p.add_argument("--api-key-env", "--api-key", dest="api_key_env", default="OPENAI_API_KEY",
                   help="name of the environment variable holding the API key")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rpm", type=float, default=None, help="requests per minute limit")
    p.add_argument("--tpm", type=float, default=None, help="tokens per minute limit")
    p.add_argument("--max-retries", type=int, default=6)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-tokens", type=int, default=None, help="default: 1500 notes, 128 instructions, 600 answers")
    p.add_argument("--price-in", type=float, default=0.0, help="USD per 1k prompt tokens (for the summary)")
    p.add_argument("--price-out", type=float, default=0.0, help="USD per 1k completion tokens")
    p.add_argument("--limit", type=int, default=None, help="only the first N input rows")
    p.add_argument("--id-column", default="patient_uid", help="notes stage: case id column")
    p.add_argument("--text-column", default="text", help="notes stage: case text column")
    p.add_argument("--tasks-per-note", type=int, default=1, help="instructions stage")
    p.add_argument("--tasks", default=",".join(TASK_KEYS), help="instructions stage: comma-separated task keys")
    p.add_argument("--seeds", default=str(SEEDS_PATH), help="instructions stage: seed instructions JSON")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    max_tokens = a.max_tokens or {"notes": 1500, "instructions": 128, "answers": 600}[a.stage]
    s = ClientSettings(base_url=a.base_url, model=a.model, api_key=os.environ.get(a.api_key_env) or "EMPTY",
                       concurrency=a.concurrency, rpm=a.rpm, tpm=a.tpm, max_retries=a.max_retries,
                       timeout=a.timeout, temperature=a.temperature, max_tokens=max_tokens,
                       price_in=a.price_in, price_out=a.price_out)
    try:
        rows = read_input(a.input)[: a.limit]
        if a.stage == "notes":
            missing = [c for c in (a.id_column, a.text_column) if rows and c not in rows[0]]
            if missing:
                raise ValueError(f"{a.input}: missing column(s) {', '.join(missing)}")
            coro = synth_notes(rows, a.out, s, a.id_column, a.text_column)
        elif a.stage == "instructions":
            tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
            unknown = [t for t in tasks if t not in TASK_KEYS]
            if unknown:
                raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASK_KEYS)}")
            coro = synth_instructions(rows, a.out, s, a.tasks_per_note, tasks, load_seeds(a.seeds), a.seed)
        else:
            coro = synth_answers(rows, a.out, s)
        result = asyncio.run(coro)
    except FatalAPIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"error: {a.input}: a row lacks the field {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.stage}: wrote {result.written}, rejected {result.rejected}, already done {result.skipped} -> {a.out}")
    print(result.usage.summary(s.price_in, s.price_out))
    if result.usage.failed:
        print(f"{result.usage.failed} row(s) failed; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
