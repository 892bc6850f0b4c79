"""Synthetic training data through any OpenAI-compatible chat-completions endpoint, following the paper's recipe.

Three stages, each a resumable JSONL file (a restart skips rows already written or rejected):

    python -m train.synth notes --input pmc_patients.csv --out notes.jsonl --base-url URL --model M
    python -m train.synth instructions --input notes.jsonl --out instructions.jsonl --base-url URL --model M
    python -m train.synth answers --input instructions.jsonl --out pairs.jsonl --base-url URL --model M

The prompts carry every rule of the authors' synthesis scripts in our own words; sampling defaults to theirs
(temperature 1; notes: 4088 tokens minus the prompt, instructions: 300, answers: the prompt's tokens + 400; prompt
tokens are estimated at 3 characters a token, no tokenizer is downloaded). Each stage drops a row whose note,
question or answer matches the authors' pattern list (e.g. "the model", "clinical language", "NER model") or whose
answer ends in "?", and writes it to ``OUT.rejected.jsonl`` with the reason.

``--prompt-file FILE`` replaces the stage's prompt (one user message) with the file's text; placeholders:
notes ``{case_report}`` (or ``{pmc}``); instructions ``{task}``, ``{note}``, ``{examples}`` (or ``{samples}``:
the example instructions, one a line) and ``{num_examples}``; answers ``{note}``, ``{question}``.

``--seeds FILE`` (instructions stage) is JSON: either an object mapping each task to its seed instructions,
``{"Named Entity Recognition": ["...", ...], "abbreviation": [...]}``, or a list of ``{"task": ..., "samples":
[...]}`` objects as in the authors' bootstrapping script; or that script itself (``.py``: its top-level
``tasks = [...]`` list is read as data, never run), so ``--seeds Asclepius/preprocessing/bootstraping.py`` uses the
authors' 40 seeds. Task names are matched case- and spacing-insensitively (key, label or a known alias); each task
generated needs at least 3 seeds (3 are shown, plus up to 2 instructions generated earlier for that task).

Where this module departs from the authors' scripts, a switch restores their behaviour: ``--keep-question-lines``
(the whole reply is the question; default: its first line without list markers, labels or quotes),
``--raw-pool`` (every reply joins the example pool; default: only accepted, cleaned questions),
``--keep-note-fences`` (the note exactly as replied; default: a surrounding code fence is removed) and
``--min-note-tokens 1`` (send every case report that leaves any room; default: 256, see ``MIN_NOTE_TOKENS``).

Requests go through ``asclepius_ui.endpoints``: bounded concurrency, requests/min and tokens/min limits, the SDK's
retries (429, 5xx, connection errors, honouring ``Retry-After``) and re-asks after malformed or empty replies.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import math
import random
import re
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from tqdm.auto import tqdm

from asclepius_ui import endpoints
from asclepius_ui.endpoints import EndpointSettings, FatalAPIError, RateLimiter, Usage
from asclepius_ui.errors import InputError
from asclepius_ui.jsonl import JsonlAppender, read_jsonl
from asclepius_ui.prompts import fill_placeholders
from asclepius_ui.tasks import TASKS, task_key

SEEDS_PATH = Path(__file__).with_name("seeds.json")
TASK_KEYS = [k for k in TASKS if k != "free"]
STAGES = ("notes", "instructions", "answers")

# ---------------------------------------------------------------- prompts (pure)

NOTE_RULES = [
    "Write the discharge summary only, with no other phrases around it such as notices or comments.",
    "Where the case report uses a standard clinical term, write the everyday, non-standardised equivalent that "
    'clinicians commonly use instead; for example, write "high cholesterol" for "hypercholesterolemia".',
    "Use abbreviations without defining them.",
    "Minor grammatical errors are acceptable.",
    "Include no clinical information or detail (medication names, doses, treatment plans, diagnoses, procedures, "
    "test results and the like) that the case report does not explicitly state or define.",
    "If the patient has not been discharged yet, write a summary of the hospital course instead of a discharge "
    "summary.",
    "Keep the structure of an EHR and medical consistency, and write a detailed and comprehensive discharge summary.",
    "A discharge summary is a comprehensive document: organise it under several distinct headings.",
]

NOTE_TEMPLATE = (
    "You are a clinical model with an expert command of clinical writing.\n\n"
    "[Case Report Begin]\n{case_report}\n[Case Report End]\n\n"
    "From the patient's case report above, write a synthetic discharge summary as it would appear in an "
    "Electronic Health Record (EHR).\n\n"
    "Requirements:\n" + "\n".join(f"{i}. {r}" for i, r in enumerate(NOTE_RULES, 1))
)

INSTRUCTION_RULES = [
    "You may draw on the examples, but write a question of your own that differs from them.",
    "Do not repeat the verbs or the sentence structure of the examples, so that the questions stay diverse.",
    "Most important: the question must be answerable from the information in the discharge summary alone.",
    "Keep the question as short as you can.",
]

INSTRUCTION_TEMPLATE = (
    "You are a healthcare professional who often consults an advanced clinical language model able to analyse "
    "clinical notes: you put questions to it and use its output to support your decisions.\n\n"
    'Suppose you want to ask it a question for the task "{task}" about the discharge summary below. '
    "How would you put it?\n\n"
    "[Discharge Summary Begin]\n{note}\n[Discharge Summary End]\n\n"
    "Below are {num_examples} example questions for this task, for reference.\n"
    + "\n".join(INSTRUCTION_RULES) + "\n\n"
    "[Example Questions Begin]\n{examples}\n[Example Questions End]\n\n"
    "Output only the question."
)

ANSWER_RULES = [
    "Be accurate and concise in responding to the instruction.",
    "If the instruction cannot be fully answered from the discharge summary, explain why it is unanswerable with "
    "the information given.",
    "Do not say that you cannot respond because you are an AI model.",
    "Do not ask a question back, and do not rephrase the instruction.",
]

ANSWER_TEMPLATE = (
    "You are a clinical language model with an expert command of clinical notes.\n\n"
    "[Discharge Summary Begin]\n{note}\n[Discharge Summary End]\n\n"
    "[Instruction Begin]\n{question}\n[Instruction End]\n\n"
    "Above are a discharge summary, or part of one, and an instruction that a healthcare professional gave about "
    "it. Respond to the instruction using the discharge summary.\n\n"
    "Requirements:\n" + "\n".join(f"- {r}" for r in ANSWER_RULES) + "\n\n"
    "Response:"
)

TEMPLATES = {"notes": NOTE_TEMPLATE, "instructions": INSTRUCTION_TEMPLATE, "answers": ANSWER_TEMPLATE}
# Placeholders a prompt file must use (``a|b``: either name); the second names are the authors' own.
REQUIRED = {"notes": ("case_report|pmc",), "instructions": ("note", "examples|samples"),
            "answers": ("note", "question")}

# The authors' sampling: temperature 1; max_tokens by stage from the prompt's token count.
TEMPERATURE = 1.0
NOTE_CONTEXT = 4088
INSTRUCTION_MAX_TOKENS = 300
ANSWER_EXTRA_TOKENS = 400
# A case report whose prompt leaves fewer completion tokens than this is not sent (the authors had no floor; their
# exact tiktoken count runs lower than the 3-characters-a-token estimate here, so a floor avoids truncated notes).
MIN_NOTE_TOKENS = 256


def approx_tokens(text: str) -> int:
    """Tokens in ``text``, over- rather than under-estimated (3 characters a token)."""
    return math.ceil(len(text) / 3)


def stage_max_tokens(stage: str, prompt: str, fixed: int | None = None) -> int:
    """The completion limit for one request: ``fixed`` if given, else the authors' rule for ``stage``."""
    if fixed is not None:
        return fixed
    if stage == "notes":
        return NOTE_CONTEXT - approx_tokens(prompt)
    if stage == "instructions":
        return INSTRUCTION_MAX_TOKENS
    return approx_tokens(prompt) + ANSWER_EXTRA_TOKENS


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def note_messages(case_report: str, template: str | None = None) -> list[dict[str, str]]:
    case = case_report.strip()
    return _user(fill_placeholders(template or NOTE_TEMPLATE, {"case_report": case, "pmc": case}))


def instruction_messages(note: str, task: str, seeds: Sequence[str], pool: Sequence[str], rng: random.Random,
                         template: str | None = None) -> list[dict[str, str]]:
    """3 random seeds plus up to 2 earlier generated instructions for ``task``, after the note."""
    examples = rng.sample(list(seeds), 3) + rng.sample(list(pool), min(2, len(pool)))
    shown = "\n".join(examples)
    text = fill_placeholders(template or INSTRUCTION_TEMPLATE,
                             {"task": TASKS[task].label, "note": note.strip(), "examples": shown, "samples": shown,
                              "num_examples": str(len(examples))})
    return _user(text)


def answer_messages(note: str, question: str, template: str | None = None) -> list[dict[str, str]]:
    return _user(fill_placeholders(template or ANSWER_TEMPLATE, {"note": note.strip(), "question": question.strip()}))


def check_template(stage: str, template: str) -> str:
    """``template`` when it has the placeholders ``stage`` needs; ``InputError`` naming the missing ones."""
    fill_placeholders(template, {}, REQUIRED[stage])
    return template


def load_seeds(path: str | Path = SEEDS_PATH, tasks: Sequence[str] = TASK_KEYS) -> dict[str, list[str]]:
    """Seed instructions by task key from a seeds file (format in the module docstring).

    Raises ``InputError`` for an unreadable file, an unknown task name, or fewer than 3 seeds for a task in
    ``tasks``.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{p}: {exc.strerror}") from None
    try:
        data = seeds_from_script(text) if p.suffix == ".py" else json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not JSON ({exc})") from None
    except (SyntaxError, ValueError) as exc:
        raise InputError(f"{p}: no top-level `tasks = [...]` list of literals ({exc})") from None
    if isinstance(data, list):
        try:
            pairs = [(d["task"], d["samples"]) for d in data]
        except (TypeError, KeyError):
            raise InputError(f'{p}: a list of seeds needs {{"task": ..., "samples": [...]}} objects') from None
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise InputError(f"{p}: expected a JSON object (task -> instructions) or a list of task objects")
    seeds: dict[str, list[str]] = defaultdict(list)
    for name, items in pairs:
        key = task_key(str(name))
        if key is None or key == "free":
            raise InputError(f"{p}: unknown task {name!r}; use one of {', '.join(TASKS[k].label for k in TASK_KEYS)}")
        if not isinstance(items, list) or not all(isinstance(x, str) and x.strip() for x in items):
            raise InputError(f"{p}: the seeds of {name!r} must be a list of non-empty strings")
        seeds[key].extend(x.strip() for x in items)
    short = [TASKS[t].label for t in tasks if len(seeds.get(t, [])) < 3]
    if short:
        raise InputError(f"{p}: need at least 3 seed instructions for {', '.join(short)}")
    return dict(seeds)


def seeds_from_script(source: str) -> list:
    """The value of the top-level ``tasks = [...]`` assignment of a Python file (the authors' bootstrapping script),
    evaluated as a literal: the file is parsed, never run."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "tasks" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError("no `tasks = ...` assignment")


def clean_instruction(reply: str) -> str:
    """The first non-empty line, without list markers, labels or surrounding quotes."""
    for line in reply.strip().splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line).strip()
        line = re.sub(r"^(?:new\s+)?(?:instruction|question)\s*:\s*", "", line, flags=re.I).strip()
        line = line.strip("\"'").strip()
        if line:
            return line
    return ""


def clean_note(reply: str) -> str:
    """Strip a surrounding markdown code fence, if any."""
    text = reply.strip()
    m = re.fullmatch(r"```[a-zA-Z]*\n(.*?)\n?```", text, flags=re.S)
    return (m.group(1) if m else text).strip()


# The authors' filter (postproc_questions.py): a note, question or answer mentioning one of these is dropped.
FILTER_PATTERNS = ("AI language", "language model", "clinical language", "recognition model", "extraction model",
                   "the model", "summarization model", "clinical model", "generation model", "AI model", "NER model")
_FILTER = re.compile("|".join(re.escape(p) for p in FILTER_PATTERNS), re.IGNORECASE)


def reject_reason(row: dict[str, Any]) -> str | None:
    """Why a row is dropped, or ``None`` to keep it.

    Each of ``note``, ``question`` and ``answer`` present in ``row`` must be non-empty and free of the
    ``FILTER_PATTERNS``; an answer must not end in "?".
    """
    for field in ("note", "question", "answer"):
        if field not in row:
            continue
        text = str(row[field] or "").strip()
        if not text:
            return f"empty {field}"
        m = _FILTER.search(text)
        if m:
            return f"{field} mentions {m.group(0)!r}"
    if "answer" in row and str(row["answer"]).strip().endswith("?"):
        return "answer ends with a question mark"
    return None


# ---------------------------------------------------------------- resumable stages


@dataclass
class StageOptions:
    """How a stage asks (the endpoint is ``EndpointSettings``): the authors' sampling unless overridden.

    ``max_tokens=None`` applies the stage's rule (``stage_max_tokens``); ``template`` is a ``--prompt-file``. The
    last four restore the authors' behaviour where this module departs from it (see the module docstring).
    """

    template: str | None = None
    temperature: float = TEMPERATURE
    max_tokens: int | None = None
    seed: int = 0
    min_note_tokens: int = MIN_NOTE_TOKENS
    keep_note_fences: bool = False
    keep_question_lines: bool = False
    raw_pool: bool = False


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


async def run_jobs(stage: str, jobs: Sequence[Job], build: Callable[[Job], list[dict[str, str]]],
                   finish: Callable[[Job, str], dict[str, Any]], out: str | Path, endpoint: EndpointSettings,
                   options: StageOptions, key_field: str = "key", client: openai.AsyncOpenAI | None = None,
                   limiter: RateLimiter | None = None,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> StageResult:
    """Run ``jobs`` not yet in ``out`` (or its rejected file), ``endpoint.concurrency`` at a time.

    ``build`` makes the messages at dispatch time; ``finish`` turns the reply into the row to write, which is
    kept unless ``reject_reason`` finds a reason to drop it (then it goes to the rejected file with the reason).
    ``sleep`` waits between re-asks after a malformed reply (injectable for tests).
    """
    done = {r.get(key_field) for r in read_jsonl(out)} | {r.get(key_field) for r in read_jsonl(rejected_path(out))}
    todo = [j for j in jobs if j.key not in done]
    usage = Usage()
    own_client = client is None
    client = client or endpoints.make_client(endpoint, usage=usage)
    limiter = limiter or endpoints.limiter_for(endpoint)
    sink, rejects = JsonlAppender(out), JsonlAppender(rejected_path(out))
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for j in todo:
        queue.put_nowait(j)
    counts = {"written": 0, "rejected": 0}
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=stage, unit="row")

    def reject(job: Job, reply: str | None, reason: str) -> None:
        rejects.write({key_field: job.key, **job.row, "reply": reply, "reason": reason})
        counts["rejected"] += 1

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            messages = build(job)
            max_tokens = stage_max_tokens(stage, messages[-1]["content"], options.max_tokens)
            if max_tokens < max(1, options.min_note_tokens) and stage == "notes" and options.max_tokens is None:
                reject(job, None, f"case report too long: its prompt leaves {max_tokens} of {NOTE_CONTEXT} tokens")
                bar.update(1)
                continue
            try:
                reply = await endpoints.complete(client, messages, endpoint, max_tokens=max_tokens,
                                                 temperature=options.temperature, limiter=limiter, usage=usage,
                                                 require_content=True, sleep=sleep)
            except FatalAPIError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the run
                usage.failed += 1
                bar.write(f"{job.key}: failed after retries: {type(exc).__name__}: {exc}")
            else:
                row = finish(job, reply.text)
                reason = reject_reason(row)
                if reason is None:
                    sink.write({key_field: job.key, **row})
                    counts["written"] += 1
                else:
                    reject(job, reply.text, reason)
            bar.update(1)
            bar.set_postfix(tokens=usage.prompt_tokens + usage.completion_tokens, retries=usage.retries)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, endpoint.concurrency))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        bar.close()
        sink.close()
        rejects.close()
        if own_client:
            await client.close()
    return StageResult(counts["written"], counts["rejected"], len(jobs) - len(todo), usage)


# ---------------------------------------------------------------- the three stages


def read_input(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV, JSONL or parquet file as dicts."""
    from train.data import read_table

    return list(read_table(path))


async def synth_notes(rows: Iterable[dict[str, Any]], out: str | Path, endpoint: EndpointSettings,
                      options: StageOptions | None = None, id_column: str = "patient_uid", text_column: str = "text",
                      **kw) -> StageResult:
    """Case reports -> discharge summaries: rows ``{"note_id", "note", "model"}``."""
    options = options or StageOptions()
    jobs = [Job(str(r[id_column]), {"case": r[text_column]}) for r in rows if str(r.get(text_column) or "").strip()]
    return await run_jobs("notes", jobs, lambda j: note_messages(j.row["case"], options.template),
                          lambda job, reply: {"note": reply if options.keep_note_fences else clean_note(reply),
                                              "model": endpoint.model}, out, endpoint,
                          options, key_field="note_id", **kw)


def assign_tasks(note_id: str, per_note: int, tasks: Sequence[str] = TASK_KEYS, seed: int = 0) -> list[str]:
    """``per_note`` distinct tasks for a note, reproducible from its id."""
    rng = random.Random(f"{seed}:{note_id}")
    return rng.sample(list(tasks), min(per_note, len(tasks)))


async def synth_instructions(rows: Iterable[dict[str, Any]], out: str | Path, endpoint: EndpointSettings,
                             options: StageOptions | None = None, tasks_per_note: int = 1,
                             tasks: Sequence[str] = TASK_KEYS, seeds: dict[str, list[str]] | None = None,
                             **kw) -> StageResult:
    """Notes -> one new instruction per (note, task), bootstrapped from seeds plus a growing pool per task.

    The pool holds the accepted, cleaned questions; with ``options.raw_pool`` every reply as it came (the authors'
    pool), kept in the rows' ``reply`` field so that a restart rebuilds it.
    """
    options = options or StageOptions()
    seeds = seeds or load_seeds(tasks=tasks)
    pool: dict[str, list[str]] = defaultdict(list)
    field = "reply" if options.raw_pool else "question"
    restored = read_jsonl(out) + (read_jsonl(rejected_path(out)) if options.raw_pool else [])
    for r in restored:
        if r.get("task") in seeds and r.get(field):
            pool[r["task"]].append(r[field])
    jobs = [Job(f"{r['note_id']}:{t}", {"note_id": str(r["note_id"]), "task": t, "note": r["note"]})
            for r in rows for t in assign_tasks(str(r["note_id"]), tasks_per_note, tasks, options.seed)]
    rng = random.Random(options.seed)

    def build(job: Job):
        t = job.row["task"]
        return instruction_messages(job.row["note"], t, seeds[t], pool[t], rng, options.template)

    def finish(job: Job, reply: str):
        question = reply.strip() if options.keep_question_lines else clean_instruction(reply)
        row = {**job.row, "question": question, "model": endpoint.model}
        if options.raw_pool:
            row["reply"] = reply
            pool[job.row["task"]].append(reply)
        elif reject_reason(row) is None:
            pool[job.row["task"]].append(row["question"])
        return row

    return await run_jobs("instructions", jobs, build, finish, out, endpoint, options, **kw)


async def synth_answers(rows: Iterable[dict[str, Any]], out: str | Path, endpoint: EndpointSettings,
                        options: StageOptions | None = None, **kw) -> StageResult:
    """Instructions -> answers, filtered by ``reject_reason`` (dropped rows go to ``*.rejected.jsonl``)."""
    options = options or StageOptions()
    jobs = [Job(str(r.get("key") or f"{r['note_id']}:{r['task']}"),
                {k: r[k] for k in ("note_id", "task", "note", "question")}) for r in rows]
    return await run_jobs("answers", jobs,
                          lambda j: answer_messages(j.row["note"], j.row["question"], options.template),
                          lambda job, reply: {**job.row, "answer": reply.strip(), "model": endpoint.model},
                          out, endpoint, options, **kw)


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.synth", description=__doc__.split("\n\n")[0],
                                epilog="Prompt-file placeholders and the seeds format: see the module docstring "
                                       "(python -c 'import train.synth as s; print(s.__doc__)') or docs/training.md.")
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--input", required=True, help="notes: case-report CSV/JSONL/parquet; later stages: JSONL")
    p.add_argument("--out", required=True, help="JSONL output (appended to; finished rows are skipped)")
    p.add_argument("--prompt-file", help="this stage's prompt, used verbatim with its placeholders filled")
    p.add_argument("--temperature", type=float, default=TEMPERATURE, help="sampling temperature (the paper: 1)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help=f"completion limit (default, as the paper: notes {NOTE_CONTEXT} minus the prompt's tokens, "
                        f"instructions {INSTRUCTION_MAX_TOKENS}, answers the prompt's tokens + {ANSWER_EXTRA_TOKENS})")
    p.add_argument("--price-in", type=float, default=0.0, help="USD per 1k prompt tokens (for the summary)")
    p.add_argument("--price-out", type=float, default=0.0, help="USD per 1k completion tokens")
    p.add_argument("--limit", type=int, default=None, help="only the first N input rows")
    p.add_argument("--id-column", default="patient_uid", help="notes stage: case id column")
    p.add_argument("--text-column", default="text", help="notes stage: case text column (the authors': patient)")
    p.add_argument("--tasks-per-note", type=int, default=1, help="instructions stage")
    p.add_argument("--tasks", default=",".join(TASK_KEYS),
                   help="instructions stage: comma-separated tasks (keys or names)")
    p.add_argument("--seeds", default=str(SEEDS_PATH), help="instructions stage: seed instructions JSON (format: "
                   "{task: [instruction, ...]} or [{\"task\": ..., \"samples\": [...]}])")
    p.add_argument("--seed", type=int, default=0)
    ref = p.add_argument_group("the authors' behaviour where this module departs from it (docs/training.md)")
    ref.add_argument("--min-note-tokens", type=int, default=MIN_NOTE_TOKENS,
                     help="notes stage: skip a case report whose prompt leaves fewer completion tokens than this "
                          f"(default {MIN_NOTE_TOKENS}; 1 sends every one that leaves any room, as the authors)")
    ref.add_argument("--keep-note-fences", action="store_true",
                     help="notes stage: keep the reply exactly, code fences included (the authors')")
    ref.add_argument("--keep-question-lines", action="store_true",
                     help="instructions stage: the whole reply is the question, every line, list markers and quotes "
                          "kept (the authors'); default: its first line, cleaned")
    ref.add_argument("--raw-pool", action="store_true",
                     help="instructions stage: every reply joins the example pool as it came, rejected ones too "
                          "(the authors'); default: only accepted, cleaned questions")
    endpoints.add_endpoint_arguments(p, model_required=True, concurrency=8)
    return p


def parse_tasks(text: str) -> list[str]:
    """Task keys from a comma-separated list of keys or names; ``InputError`` for an unknown one."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    keys = [task_key(n) for n in names]
    unknown = [n for n, k in zip(names, keys, strict=True) if k is None or k == "free"]
    if unknown:
        raise InputError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASK_KEYS)}")
    return [k for k in keys if k is not None]


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        endpoint = endpoints.settings_from_args(a)
        template = check_template(a.stage, Path(a.prompt_file).read_text(encoding="utf-8")) if a.prompt_file else None
        options = StageOptions(template=template, temperature=a.temperature, max_tokens=a.max_tokens, seed=a.seed,
                               min_note_tokens=a.min_note_tokens, keep_note_fences=a.keep_note_fences,
                               keep_question_lines=a.keep_question_lines, raw_pool=a.raw_pool)
        rows = read_input(a.input)[: a.limit]
        if a.stage == "notes":
            missing = [c for c in (a.id_column, a.text_column) if rows and c not in rows[0]]
            if missing:
                raise InputError(f"{a.input}: missing column(s) {', '.join(missing)}")
            coro = synth_notes(rows, a.out, endpoint, options, a.id_column, a.text_column)
        elif a.stage == "instructions":
            tasks = parse_tasks(a.tasks)
            coro = synth_instructions(rows, a.out, endpoint, options, a.tasks_per_note, tasks,
                                      load_seeds(a.seeds, tasks))
        else:
            coro = synth_answers(rows, a.out, endpoint, options)
        result = asyncio.run(coro)
    except FatalAPIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"error: {a.input}: a row lacks the field {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:  # InputError and train.data.DataError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.stage}: wrote {result.written}, rejected {result.rejected}, already done {result.skipped} -> {a.out}")
    print(result.usage.summary(a.price_in, a.price_out))
    if result.usage.failed:
        print(f"{result.usage.failed} row(s) failed; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
