"""train.synth against a real local HTTP server speaking the OpenAI chat-completions protocol.

The server is the only test double (for the paid remote API); the real ``openai`` client talks to it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading

import pytest

from asclepius_ui.endpoints import EndpointSettings
from train import synth
from train.synth import StageOptions, clean_instruction, reject_reason

from .openai_server import Error, OpenAIServer, Raw, Reply, completion, instruction_of

FAST = {"retry-after-ms": "1"}  # the SDK honours it: retries without real waiting


def between(text: str, begin: str, end: str) -> str:
    m = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, re.DOTALL)
    return m.group(1) if m else ""


def reply_text(body: dict) -> str:
    user = body["messages"][-1]["content"]
    if "[Case Report Begin]" in user:
        case = between(user, "[Case Report Begin]", "[Case Report End]")
        return f"```\nDISCHARGE SUMMARY\nHospital Course: pt with {case[:40]}\n```"
    if "[Example Questions Begin]" in user:
        n = len(between(user, "[Example Questions Begin]", "[Example Questions End]").splitlines())
        if "MODELNOTE" in user:
            return "What does the model say about the dose?"
        return f'1. Question: "What was done on day {n}?"\nextra line'
    question = instruction_of(user)
    if "ROBOT" in question:
        return "As an AI language model, I cannot give medical advice."
    if "ASKBACK" in question:
        return "Could you clarify which admission you mean?"
    if "UNANSWERABLE" in question:
        return "The summary does not record the dose, so this cannot be answered from it."
    return f"The answer to '{question}' is in the hospital course."


class Faults:
    """Responder: serves the queued ``faults`` first (429, 500, 503, 401, malformed ...), then normal answers."""

    def __init__(self):
        self.faults: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> Reply:
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault == "429":
            return Error(429, "rate limited", FAST)
        if fault in ("500", "503"):
            return Error(int(fault), "server error", FAST)
        if fault == "401":
            return Error(401, "bad key")
        if fault == "badjson":
            return Raw(b'{"id": "x", "choices": [')
        if fault == "nochoices":
            reply = completion(body, reply_text(body))
            reply.pop("choices")
            return Raw(json.dumps(reply).encode())
        return "" if fault == "empty" else reply_text(body)


class FakeSleep:
    """Records the waits asked for instead of sleeping."""

    def __init__(self):
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def ok_usage(api: OpenAIServer) -> dict[str, int]:
    """Tokens the server billed for replies that had content."""
    served = [e["usage"] for e in api.log if e["text"]]
    return {"prompt": sum(u["prompt_tokens"] for u in served),
            "completion": sum(u["completion_tokens"] for u in served)}


@pytest.fixture
def api():
    with OpenAIServer(Faults()) as server:
        yield server


def settings(api: OpenAIServer, **kw) -> EndpointSettings:
    base = dict(base_url=api.base_url, model="test-model", api_key="sk-test", concurrency=3, max_retries=4,
                timeout=60)  # a stalled request on a loaded CI machine must not count as a retry
    return EndpointSettings(**{**base, **kw})


CASES = [{"patient_uid": f"uid-{i}", "text": f"A {30 + i}-year-old man with chest pain number {i}."}
         for i in range(6)]


def test_notes_retry_on_429_5xx_and_malformed_then_resume(api, tmp_path):
    out = tmp_path / "notes.jsonl"
    api.responder.faults = ["429", "500", "badjson", "empty", "503", "nochoices"]
    sleep = FakeSleep()
    res = asyncio.run(synth.synth_notes(CASES[:4], out, settings(api), sleep=sleep))
    rows = synth.read_jsonl(out)
    assert sorted(r["note_id"] for r in rows) == [f"uid-{i}" for i in range(4)]
    assert all(r["note"].startswith("DISCHARGE SUMMARY") and "```" not in r["note"] for r in rows)
    assert res.written == 4 and res.usage.failed == 0
    assert res.usage.retries == 6 and res.usage.requests == 10 and len(api.requests) == 10
    assert dict(res.usage.statuses) == {"429": 1, "500": 1, "503": 1} and res.usage.malformed == 3
    assert len(sleep.waits) == 3, "malformed replies are re-asked after a (fake) backoff wait"
    billed = ok_usage(api)
    assert res.usage.prompt_tokens == billed["prompt"]
    assert res.usage.completion_tokens == billed["completion"]
    assert res.usage.cost(0.5, 1.5) == pytest.approx(billed["prompt"] / 1000 * 0.5 + billed["completion"] / 1000 * 1.5)
    # the authors' sampling: temperature 1, max_tokens 4088 minus the prompt's (estimated) tokens
    body = api.requests[-1]
    assert body["temperature"] == 1
    assert body["max_tokens"] == 4088 - synth.approx_tokens(body["messages"][0]["content"])
    assert [m["role"] for m in body["messages"]] == ["user"]

    # a crash left a torn line: the restart ignores it, skips finished rows and asks only for the rest
    with out.open("a") as f:
        f.write('{"note_id": "uid-4", "no')
    before = len(api.requests)
    res2 = asyncio.run(synth.synth_notes(CASES, out, settings(api)))
    assert res2.skipped == 4 and res2.written == 2
    assert len(api.requests) - before == 2
    assert sorted(r["note_id"] for r in synth.read_jsonl(out)) == [f"uid-{i}" for i in range(6)]


def test_note_prompt_states_every_rule_of_the_reference():
    text = synth.note_messages("CASE TEXT")[0]["content"]
    assert text.index("[Case Report Begin]\nCASE TEXT\n[Case Report End]") < text.index("Requirements")
    for phrase in ["discharge summary only", "no other phrases", '"high cholesterol" for "hypercholesterolemia"',
                   "abbreviations without defining them", "Minor grammatical errors",
                   "does not explicitly state or define", "not been discharged yet",
                   "summary of the hospital course", "structure of an EHR", "medical consistency",
                   "detailed and comprehensive discharge summary", "several distinct headings"]:
        assert phrase in text, phrase


def test_instruction_prompt_states_every_rule_of_the_reference():
    text = synth.instruction_messages("THE NOTE", "abbreviation", ["s1", "s2", "s3"], [], synth.random.Random(0)
                                      )[0]["content"]
    assert text.index("THE NOTE") < text.index("[Example Questions Begin]"), "the note comes before the examples"
    for phrase in ["healthcare professional", 'the task "Abbreviation expansion"', "differs from them",
                   "Do not repeat the verbs or the sentence structure of the examples",
                   "answerable from the information in the discharge summary alone", "as short as you can",
                   "3 example questions"]:
        assert phrase in text, phrase
    assert text.rstrip().endswith("Output only the question.")


def test_answer_prompt_states_every_rule_of_the_reference():
    text = synth.answer_messages("THE NOTE", "THE QUESTION")[0]["content"]
    assert text.index("THE NOTE") < text.index("THE QUESTION")
    for phrase in ["accurate and concise", "cannot be fully answered", "explain why it is unanswerable",
                   "Do not say that you cannot respond because you are an AI model",
                   "Do not ask a question back", "do not rephrase the instruction"]:
        assert phrase in text, phrase
    assert text.endswith("Response:")


def test_max_tokens_follow_the_reference():
    prompt = "x" * 300
    assert synth.stage_max_tokens("notes", prompt) == 4088 - 100
    assert synth.stage_max_tokens("instructions", prompt) == 300
    assert synth.stage_max_tokens("answers", prompt) == 100 + 400
    assert synth.stage_max_tokens("answers", prompt, fixed=64) == 64


def test_instructions_use_three_seeds_and_a_growing_pool(api, tmp_path):
    notes = [{"note_id": f"n{i}", "note": f"Note {i}: pt admitted with pneumonia."} for i in range(4)]
    out = tmp_path / "instructions.jsonl"
    res = asyncio.run(synth.synth_instructions(notes, out, settings(api, concurrency=1), tasks=["qa"]))
    assert res.written == 4
    # 3 seeds, then the pool grows by one question per finished request, capped at 2 shown
    shown = [len(between(r["messages"][-1]["content"], "[Example Questions Begin]", "[Example Questions End]")
                 .splitlines()) for r in api.requests]
    assert shown == [3, 4, 5, 5]
    assert all(r["max_tokens"] == 300 and r["temperature"] == 1 for r in api.requests)
    seeds = synth.load_seeds()["qa"]
    first = api.requests[0]["messages"][-1]["content"]
    assert sum(s in first for s in seeds) == 3 and "Note 0" in first and "Question answering" in first
    rows = synth.read_jsonl(out)
    assert rows[0] == {"key": "n0:qa", "note_id": "n0", "task": "qa", "note": notes[0]["note"],
                       "question": "What was done on day 3?", "model": "test-model"}


def test_the_filter_drops_a_question_that_says_the_model(api, tmp_path):
    notes = [{"note_id": "n0", "note": "Pt had CAP."}, {"note_id": "n1", "note": "MODELNOTE pt had CHF."}]
    out = tmp_path / "instructions.jsonl"
    res = asyncio.run(synth.synth_instructions(notes, out, settings(api, concurrency=1), tasks=["qa"]))
    assert res.written == 1 and res.rejected == 1
    rejected = synth.read_jsonl(synth.rejected_path(out))
    assert rejected[0]["note_id"] == "n1" and rejected[0]["reason"] == "question mentions 'the model'"
    assert rejected[0]["reply"] == "What does the model say about the dose?"
    assert reject_reason({"note": "n", "question": "What does The Model think?"}) == "question mentions 'The Model'"


def test_seeds_are_five_per_task():
    seeds = synth.load_seeds()
    assert sorted(seeds) == sorted(synth.TASK_KEYS) and len(synth.TASK_KEYS) == 8
    assert all(len(v) == 5 and len(set(v)) == 5 for v in seeds.values())


def test_seeds_file_in_the_authors_format_with_any_spelling(tmp_path):
    path = tmp_path / "seeds.json"
    path.write_text(json.dumps([{"task": "Named Entity Recognition", "samples": ["a", "b", "c", "d", "e"]},
                                {"task": "abbreviation  EXPANSION", "samples": ["f", "g", "h"]}]))
    seeds = synth.load_seeds(path, tasks=["ner", "abbreviation"])
    assert seeds == {"ner": ["a", "b", "c", "d", "e"], "abbreviation": ["f", "g", "h"]}
    with pytest.raises(synth.InputError, match="at least 3 seed instructions for Question answering"):
        synth.load_seeds(path, tasks=["ner", "qa"])
    path.write_text(json.dumps({"Triage": ["a", "b", "c"]}))
    with pytest.raises(synth.InputError, match="unknown task 'Triage'"):
        synth.load_seeds(path, tasks=["ner"])


def test_answers_filtered(api, tmp_path):
    qs = ["What was the diagnosis?", "ROBOT question", "ASKBACK please", "UNANSWERABLE dose?", "Which drug?"]
    rows = [{"note_id": f"n{i}", "task": "qa", "note": "Pt had CAP.", "question": q} for i, q in enumerate(qs)]
    out = tmp_path / "pairs.jsonl"
    res = asyncio.run(synth.synth_answers(rows, out, settings(api)))
    kept = synth.read_jsonl(out)
    rejected = synth.read_jsonl(synth.rejected_path(out))
    assert sorted(r["question"] for r in kept) == ["UNANSWERABLE dose?", "What was the diagnosis?", "Which drug?"]
    assert {r["question"]: r["reason"] for r in rejected} == {
        "ROBOT question": "answer mentions 'AI language'",
        "ASKBACK please": "answer ends with a question mark",
    }
    assert res.written == 3 and res.rejected == 2
    body = api.requests[0]
    assert body["max_tokens"] == synth.approx_tokens(body["messages"][0]["content"]) + 400
    # rejected rows count as finished: a rerun sends nothing
    n = len(api.requests)
    asyncio.run(synth.synth_answers(rows, out, settings(api)))
    assert len(api.requests) == n


@pytest.mark.parametrize("pattern", synth.FILTER_PATTERNS)
def test_every_reference_pattern_is_filtered_in_every_field(pattern):
    for field in ("note", "question", "answer"):
        row = {"note": "Pt had CAP.", "question": "Which drug?", "answer": "Ceftriaxone."}
        row[field] = f"Text where {pattern.upper()} appears."
        assert reject_reason(row) == f"{field} mentions {pattern.upper()!r}"


def test_reject_reason_and_cleaning():
    assert reject_reason({"answer": "The patient received heparin."}) is None
    assert reject_reason({"answer": "As a language model I think it is CHF."}) == "answer mentions 'language model'"
    assert reject_reason({"answer": "I cannot determine that from the note."}) is None  # an explained unanswerable
    assert reject_reason({"answer": "Is it heparin?"}) == "answer ends with a question mark"
    assert reject_reason({"question": "Which drug?"}) is None
    assert reject_reason({"note": "  "}) == "empty note"
    assert clean_instruction('  \n2) Instruction: "Expand AKI."\n') == "Expand AKI."
    assert clean_instruction("- New instruction: List the drugs.") == "List the drugs."


def test_prompt_files_per_stage_and_their_placeholders(api, tmp_path):
    notes_prompt = "[Case Report Begin]\n{pmc}\n[Case Report End]\nWrite it. {\"json\": true}"
    res = asyncio.run(synth.synth_notes(CASES[:1], tmp_path / "n.jsonl", settings(api),
                                        StageOptions(template=synth.check_template("notes", notes_prompt))))
    assert res.written == 1
    assert api.requests[-1]["messages"] == [{"role": "user", "content": (
        f"[Case Report Begin]\n{CASES[0]['text']}\n[Case Report End]\nWrite it. {{\"json\": true}}")}]
    with pytest.raises(synth.InputError, match=r"\{examples\} or \{samples\}"):
        synth.check_template("instructions", "{note} {task}")
    with pytest.raises(synth.InputError, match=r"\{question\}"):
        synth.check_template("answers", "{note}")


def test_cli_notes_summary_and_bad_key(api, tmp_path, monkeypatch, capsys):
    csv = tmp_path / "cases.csv"
    csv.write_text("patient_uid,text,age\n" + "".join(f'{c["patient_uid"]},"{c["text"]}",40\n' for c in CASES[:3]))
    out = tmp_path / "notes.jsonl"
    monkeypatch.setenv("MY_KEY", "sk-test")
    args = ["notes", "--input", str(csv), "--out", str(out), "--base-url", api.base_url, "--model", "m",
            "--api-key-env", "MY_KEY", "--price-in", "1", "--price-out", "2", "--rpm", "600", "--tpm", "100000"]
    assert synth.main(args) == 0
    text = capsys.readouterr().out
    assert "wrote 3" in text and "prompt_tokens=" in text and "cost=$" in text
    assert api.requests[0]["model"] == "m"

    api.responder.faults = ["401"]
    assert synth.main(args[:4] + [str(tmp_path / "other.jsonl")] + args[5:]) == 2
    assert "AuthenticationError" in capsys.readouterr().err
    assert len(synth.read_jsonl(out)) == 3  # nothing already saved is lost

    assert synth.main(["notes", "--input", str(tmp_path / "missing.csv"), "--out", str(out), "--model", "m",
                       "--base-url", api.base_url]) == 2
    assert "no such file" in capsys.readouterr().err
    # a key given where an env var's NAME belongs is refused, never silently dropped
    assert synth.main(args[:10] + ["sk-live-abc123"] + args[11:]) == 2
    assert "--api-key-env takes the NAME" in capsys.readouterr().err
    assert synth.main(args[:10] + ["UNSET_KEY_VAR"] + args[11:]) == 2
    assert "UNSET_KEY_VAR: that environment variable is not set" in capsys.readouterr().err


def test_cli_api_key_is_refused_not_dropped(tmp_path, capsys, monkeypatch):
    rows = tmp_path / "instructions.jsonl"
    rows.write_text(json.dumps({"note_id": "n0", "task": "qa", "note": "Pt had CAP.", "question": "Which drug?"}))
    out = tmp_path / "p.jsonl"
    with OpenAIServer(Faults(), api_key="sk-secret") as api:
        base = ["answers", "--input", str(rows), "--out", str(out), "--base-url", api.base_url, "--model", "m"]
        assert synth.main(base + ["--api-key", "sk-secret"]) == 2
        assert "name it with --api-key-env" in capsys.readouterr().err and not api.requests
        monkeypatch.setenv("SECRET_KEY", "sk-secret")
        assert synth.main(base + ["--api-key-env", "SECRET_KEY"]) == 0
    assert "wrote 1" in capsys.readouterr().out


def test_tasks_flag_takes_any_spelling():
    assert synth.parse_tasks("qa, Named Entity Recognition,text summarization") == ["qa", "ner", "summarization"]
    with pytest.raises(synth.InputError, match="unknown task"):
        synth.parse_tasks("qa,triage")


def _examples(body: dict) -> str:
    return between(body["messages"][-1]["content"], "[Example Questions Begin]", "[Example Questions End]")


def test_keep_question_lines_and_raw_pool_restore_the_authors_behaviour(api, tmp_path):
    """Default: the cleaned first line is the question and only accepted questions join the pool. The switches:
    the whole reply is the question, and every reply (a rejected one too) joins the pool as it came."""
    notes = [{"note_id": "n0", "note": "MODELNOTE pt had CHF."}, {"note_id": "n1", "note": "Pt had CAP."},
             {"note_id": "n2", "note": "Pt had AKI."}]
    default_out = tmp_path / "default.jsonl"
    asyncio.run(synth.synth_instructions(notes, default_out, settings(api, concurrency=1), tasks=["qa"]))
    default_examples = [_examples(r) for r in api.requests]
    assert "the model" not in default_examples[1] and "What was done on day 3?" in default_examples[2]
    assert "extra line" not in default_examples[2]
    assert synth.read_jsonl(default_out)[0]["question"] == "What was done on day 3?"

    api.requests.clear()
    raw_out = tmp_path / "raw.jsonl"
    options = StageOptions(keep_question_lines=True, raw_pool=True)
    res = asyncio.run(synth.synth_instructions(notes, raw_out, settings(api, concurrency=1), options,
                                               tasks=["qa"]))
    assert res.written == 2 and res.rejected == 1
    raw_examples = [_examples(r) for r in api.requests]
    assert "What does the model say about the dose?" in raw_examples[1]  # the rejected reply joined the pool
    assert '1. Question: "What was done on day 4?"\nextra line' in raw_examples[2]
    rows = synth.read_jsonl(raw_out)
    assert rows[0]["question"] == '1. Question: "What was done on day 4?"\nextra line' == rows[0]["reply"]

    api.requests.clear()  # a restart rebuilds the raw pool from the written and the rejected rows
    more = [*notes, {"note_id": "n3", "note": "Pt had PE."}]
    asyncio.run(synth.synth_instructions(more, raw_out, settings(api, concurrency=1), options, tasks=["qa"]))
    (last,) = api.requests
    shown = _examples(last)
    assert "What does the model say about the dose?" in shown or "extra line" in shown


def test_keep_note_fences_and_min_note_tokens(api, tmp_path):
    out = tmp_path / "notes.jsonl"
    asyncio.run(synth.synth_notes(CASES[:1], out, settings(api), StageOptions(keep_note_fences=True)))
    assert synth.read_jsonl(out)[0]["note"].startswith("```\nDISCHARGE SUMMARY")  # the reply exactly
    # a case report whose prompt leaves between 1 and 255 completion tokens (by the 3-characters estimate)
    prompt_chars = len(synth.note_messages("")[0]["content"])
    long_case = [{"patient_uid": "long", "text": "x" * (3 * (synth.NOTE_CONTEXT - 100) - prompt_chars)}]
    left = synth.stage_max_tokens("notes", synth.note_messages(long_case[0]["text"])[0]["content"])
    assert 1 <= left < synth.MIN_NOTE_TOKENS
    skipped = asyncio.run(synth.synth_notes(long_case, tmp_path / "a.jsonl", settings(api)))
    assert skipped.rejected == 1 and "case report too long" in synth.read_jsonl(tmp_path / "a.rejected.jsonl")[0][
        "reason"]
    sent = asyncio.run(synth.synth_notes(long_case, tmp_path / "b.jsonl", settings(api),
                                         StageOptions(min_note_tokens=1)))
    assert sent.written == 1 and api.requests[-1]["max_tokens"] == left


def test_cli_switches_reach_the_stages(api, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    common = ["--base-url", api.base_url, "--model", "m", "--api-key-env", "MY_KEY"]
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps(CASES[0]) + "\n")
    assert synth.main(["notes", "--input", str(cases), "--out", str(tmp_path / "n.jsonl"), "--keep-note-fences",
                       "--min-note-tokens", "1", *common]) == 0
    assert synth.read_jsonl(tmp_path / "n.jsonl")[0]["note"].startswith("```")
    assert synth.main(["instructions", "--input", str(tmp_path / "n.jsonl"), "--out", str(tmp_path / "i.jsonl"),
                       "--tasks", "qa", "--keep-question-lines", "--raw-pool", *common]) == 0
    (row,) = synth.read_jsonl(tmp_path / "i.jsonl")
    assert row["question"].endswith("extra line") and row["reply"].endswith("extra line")


def test_seeds_read_from_the_authors_script_without_running_it(tmp_path):
    """`--seeds bootstraping.py`: the script's top-level `tasks = [...]` is read as a literal (here a stand-in file
    of the same shape; the test does not depend on the authors' repository)."""
    script = tmp_path / "bootstraping.py"
    script.write_text('import os\nos.environ["SEEDS_SCRIPT_RAN"] = "1"\nprompt = """{task}"""\n'
                      'tasks = [\n    {"task": "Named Entity Recognition", "samples": ["a?", "b?", "c?", "d?", "e?"],'
                      ' "pool": []},\n    {"task": "Question Answering", "samples": ["f?", "g?", "h?"],'
                      ' "pool": []},\n]\n'
                      "def main():\n    raise SystemExit(1)\n")
    assert synth.load_seeds(script, tasks=["ner", "qa"]) == {"ner": ["a?", "b?", "c?", "d?", "e?"],
                                                             "qa": ["f?", "g?", "h?"]}
    import os

    assert "SEEDS_SCRIPT_RAN" not in os.environ
    (tmp_path / "other.py").write_text("x = 1\n")
    with pytest.raises(synth.InputError, match="no top-level `tasks"):
        synth.load_seeds(tmp_path / "other.py", tasks=["ner"])
