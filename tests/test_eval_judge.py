"""The judge against a real local HTTP server speaking the chat-completions protocol, with the real openai client."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable

import openai
import pytest

from asclepius_ui.endpoints import EndpointSettings
from eval import judge
from eval.judge import JudgeOptions, consistency, judge_rows
from eval.judge_prompt import (
    agent_order,
    build_judge_messages,
    build_judge_prompt,
    parse_scores,
    parse_scores_reference,
)
from eval.rows import read_done

from .openai_server import Error, OpenAIServer, instruction_of, prompt_of

AGENT_BLOCK = re.compile(r"\[Agent (\w+)(?:'s)? Answer Begin\]\n(.*?)\n\[Agent \1(?:'s)? Answer End\]", re.DOTALL)

MODELS = ["alpha", "beta", "gamma"]
TRUE_SCORE = {"alpha": 4, "beta": 2, "gamma": 3}


class ScriptedJudge:
    """Responder for the judge: scores each anonymous agent's answer with ``score_of`` after mapping it back to its
    true model, so a test can prove that the shuffled order maps back to the right model. ``script`` queues
    per-instruction actions (``("status", code, headers)`` or ``("reply", text)``) served before that. Streamed
    requests get an answer that echoes the instruction. ``calls`` records each request it answered."""

    def __init__(self, score_of: Callable[[str], int] | None = None):
        self.score_of = score_of or (lambda answer: 3)
        self.script: dict[str, list[tuple]] = {}
        self.calls: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict):
        prompt = prompt_of(body)
        instruction = instruction_of(prompt)
        with self._lock:
            action = self.script[instruction].pop(0) if self.script.get(instruction) else None
            self.calls.append({"time": time.monotonic(), "instruction": instruction, "prompt": prompt, "body": body,
                               "stream": bool(body.get("stream")), "action": action[0] if action else "default"})
        if action and action[0] == "status":
            return Error(action[1], f"scripted {action[1]}", action[2])
        if body.get("stream"):
            return f"Answer to: {instruction}"
        if action and action[0] == "reply":
            return action[1]
        blocks = AGENT_BLOCK.findall(prompt)
        if blocks and blocks[0][0] == "A":  # the paper's protocol: the scores on the first line
            return " ".join(str(self.score_of(text)) for _, text in blocks) + "\nEach response was compared."
        return "\n".join(f"Agent {i}: {self.score_of(text)}" for i, text in blocks)

    def judge_calls(self, instruction: str | None = None) -> list[dict]:
        return [c for c in self.calls if not c["stream"] and (instruction is None or c["instruction"] == instruction)]


def judge_server(score_of: Callable[[str], int] | None = None, delay: float = 0.0) -> OpenAIServer:
    """The local endpoint with a ``ScriptedJudge`` as ``.responder``; only the API key "k" is accepted."""
    return OpenAIServer(ScriptedJudge(score_of), api_key="k", delay=delay)


def score_by_model(answer: str) -> int:
    """The stub reads which model wrote the answer from its text and scores that model."""
    return TRUE_SCORE[answer.split(":")[0]]


def make_rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"r{i}", "note": f"Note {i}: patient admitted with chest pain.", "question": f"Question {i}?",
             "task": "qa" if i % 2 else "summarization",
             **{f"answer_{m}": f"{m}: answer to question {i}" for m in MODELS}} for i in range(start, start + n)]


def config(stub: OpenAIServer, **kw) -> EndpointSettings:
    return EndpointSettings(model="judge-x", base_url=stub.base_url, api_key="k", **kw)


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_paper_prompt_labels_answers_asks_for_answer_first_and_a_first_line_of_scores():
    messages = build_judge_messages("The note.", "The instruction?", ["first answer", "second answer", "third"])
    assert [m["role"] for m in messages] == ["user"]
    prompt = messages[0]["content"]
    assert prompt.index("The note.") < prompt.index("The instruction?") < prompt.index("first answer")
    assert [b for b in AGENT_BLOCK.findall(prompt)] == [("A", "first answer"), ("B", "second answer"), ("C", "third")]
    assert "labelled A, B, C" in prompt
    assert "first work out the answer to the instruction yourself" in prompt
    assert "compare each model's response with your own answer" in prompt
    assert "The first line of your reply must hold only the 3 scores" in prompt
    assert "separated by single spaces" in prompt
    assert "without any explanation" in prompt
    for level in ["Unacceptable (1 point)", "Poor (2 points)", "Satisfactory (3 points)", "Excellent (4 points)"]:
        assert level in prompt
    criteria = prompt[prompt.index("Poor (2 points)"):prompt.index("Excellent")]
    assert criteria.count("incorrect or irrelevant") == 2, "levels 2 and 3 keep the 'irrelevant' clause"
    assert "unanswerable" in prompt and "cannot be answered from the summary" in prompt


def test_lines_protocol_keeps_the_earlier_format():
    prompt = build_judge_prompt("The note.", "The instruction?", ["first answer", "second answer"], "lines")
    assert "The note." in prompt and "The instruction?" in prompt
    assert prompt.index("first answer") < prompt.index("second answer")
    assert "Unacceptable" in prompt and "Excellent" in prompt and "asclepius-4pt-v1" in prompt
    assert "Agent 1: <score>\nAgent 2: <score>" in prompt
    assert [b[1] for b in AGENT_BLOCK.findall(prompt)] == ["first answer", "second answer"]
    assert [m["role"] for m in build_judge_messages("n", "q", ["a", "b"], "lines")] == ["system", "user"]


def test_a_prompt_file_is_used_verbatim_with_the_authors_placeholders():
    template = 'Grade.\n{note}\n{question}\n{answers}There are {num_samples} answers. JSON like {"x": 1} stays.'
    prompt = build_judge_prompt("N", "Q", ["a1", "a2"], template=template)
    assert prompt == ("Grade.\nN\nQ\n[Agent A's Answer Begin]\na1\n[Agent A's Answer End]\n\n"
                      "[Agent B's Answer Begin]\na2\n[Agent B's Answer End]\n\n"
                      'There are 2 answers. JSON like {"x": 1} stays.')
    with pytest.raises(judge.InputError, match="answers"):
        build_judge_prompt("N", "Q", ["a1", "a2"], template="{note} {question}")


def test_order_is_seeded_per_row_and_a_permutation():
    orders = {tuple(agent_order(MODELS, f"r{i}", seed=0)) for i in range(12)}
    assert len(orders) > 1 and all(sorted(o) == sorted(MODELS) for o in orders)
    assert agent_order(MODELS, "r1", 0) == agent_order(MODELS, "r1", 0)


@pytest.mark.parametrize("text,expected", [
    ("Agent 1: 3\nAgent 2: 4", {1: 3, 2: 4}),
    ("**Agent 1**: 3\n**Agent 2** - 4", {1: 3, 2: 4}),
    ("Here are my scores.\n\nAgent 1 (score: 2)\nAgent 2 — 1\nThanks!", {1: 2, 2: 1}),
    ('```json\n{"Agent 1": 3, "Agent 2": "4"}\n```', {1: 3, 2: 4}),
    ('{"scores": [1, 2]}', {1: 1, 2: 2}),
    ('{"A": 2, "B": 3}', {1: 2, 2: 3}),
    ("Agent 1: 3/4, Agent 2: 4/4", {1: 3, 2: 4}),
    ("Agent A: 3\nAgent B's score: 1", {1: 3, 2: 1}),
    ("3 4", {1: 3, 2: 4}),
    ('"2 1"\nA is wrong about the dose; B is right.', {1: 2, 2: 1}),
    ("\n  4 4  \nBoth are complete.", {1: 4, 2: 4}),
])
def test_parse_tolerates_formats(text, expected):
    parsed = parse_scores(text, 2)
    assert parsed.scores == expected and parsed.error is None


def test_parse_reads_the_papers_first_line():
    assert parse_scores("2 4 1", 3).scores == {1: 2, 2: 4, 3: 1}
    short = parse_scores("2 4", 3)
    assert short.scores == {1: None, 2: None, 3: None} and "2 score(s), expected 3" in short.error
    out_of_range = parse_scores("2 5 1\nexplanation", 3)
    assert out_of_range.scores == {1: 2, 2: None, 3: 1} and "Agent 2 score 5" in out_of_range.error


@pytest.mark.parametrize("text,expected,needle", [
    ("", {1: None, 2: None}, "empty"),
    ("Both answers look fine to me.", {1: None, 2: None}, "no scores"),
    ("Agent 1: 5\nAgent 2: 3", {1: None, 2: 3}, "Agent 1 score 5"),
    ("Agent 1: 3.5\nAgent 2: 0", {1: None, 2: None}, "Agent 2 score 0"),
    ("Agent 1: 3", {1: 3, 2: None}, "no score for Agent 2"),
    ("Agent 1: 3\nAgent 1: 4\nAgent 2: 2", {1: None, 2: 2}, "conflicting"),
])
def test_parse_marks_bad_scores_missing_never_zero(text, expected, needle):
    parsed = parse_scores(text, 2)
    assert parsed.scores == expected
    assert needle in parsed.error


@pytest.mark.parametrize("text,strict,reference", [
    ("3\n4", None, {1: 3, 2: 4}),  # the whole reply split on whitespace: two scores there, one line short here
    ("2 4 1", None, {1: 2, 2: 4}),  # the first N values, whatever follows
    ('"3 4"', {1: 3, 2: 4}, {1: 3, 2: 4}),  # quotes stripped from the ends
    ("4 5", {1: 4, 2: None}, {1: 4, 2: 5}),  # out of range kept as it is
    ("3", None, {1: 0, 2: 0}),  # too few values: every answer 0
    ("Scores: 3 4", None, {1: 0, 2: 0}),  # the first value is not a number
    ("", None, {1: 0, 2: 0}),
])
def test_reference_parse_rule_differs_from_strict(text, strict, reference):
    parsed = parse_scores(text, 2)
    assert parsed.scores == (strict or {1: None, 2: None})
    ref = parse_scores_reference(text, 2)
    assert ref.scores == reference
    assert (ref.error is None) == (0 not in reference.values())


def test_parse_reference_scores_failures_zero_without_asking_again(tmp_path):
    out = tmp_path / "judged.jsonl"
    rows = make_rows(3)
    with judge_server(score_of=score_by_model) as stub:
        stub.responder.script["Question 0?"] = [("reply", "I am unable to grade these answers.")] * 2
        stub.responder.script["Question 1?"] = [("reply", "4\n1\n3\nbecause ...")] * 2
        summary = judge_rows(rows, out, config(stub), JudgeOptions(parse="reference"), progress=False)
        asked = {q: len(stub.responder.judge_calls(q)) for q in ("Question 0?", "Question 1?", "Question 2?")}
    assert asked == {"Question 0?": 1, "Question 1?": 1, "Question 2?": 1} and summary.reasked == 0
    judged = {r["id"]: r for r in lines(out)}
    assert all(r["parse"] == "reference" for r in judged.values())
    assert [judged["r0"][f"score_{m}"] for m in MODELS] == [0, 0, 0] and judged["r0"]["parse_error"]
    r1 = judged["r1"]  # scores by position, mapped back through the shuffle
    assert [r1[f"score_{m}"] for m in r1["order"]] == [4, 1, 3] and r1["parse_error"] is None
    assert {m: judged["r2"][f"score_{m}"] for m in MODELS} == TRUE_SCORE
    strict_out = tmp_path / "strict.jsonl"
    with judge_server(score_of=score_by_model) as stub:  # the same replies under the default rule
        stub.responder.script["Question 1?"] = [("reply", "4\n1\n3\nbecause ...")] * 2
        judge_rows(rows[1:2], strict_out, config(stub), progress=False)
    strict = lines(strict_out)[0]
    assert strict["parse"] == "strict" and all(strict[f"score_{m}"] is None for m in MODELS)


@pytest.mark.parametrize("protocol", ["paper", "lines"])
def test_shuffled_order_maps_back_to_the_right_model(tmp_path, protocol):
    out = tmp_path / "judged.jsonl"
    rows = make_rows(8)
    with judge_server(score_of=score_by_model) as stub:
        summary = judge_rows(rows, out, config(stub), JudgeOptions(protocol=protocol), progress=False)
        calls = stub.responder.judge_calls()
    assert summary.written == 8 and not summary.failed and summary.parse_errors == 0
    judged = {r["id"]: r for r in lines(out)}
    orders = set()
    for row in rows:
        r = judged[row["id"]]
        assert {m: r[f"score_{m}"] for m in MODELS} == TRUE_SCORE
        assert r["order"] == agent_order(MODELS, row["id"], 0)
        assert r["pass"] == "forward" and r["parse_error"] is None and r["protocol"] == protocol
        first_line = r["raw_reply"].splitlines()[0]
        assert first_line == (" ".join(str(TRUE_SCORE[m]) for m in r["order"]) if protocol == "paper"
                              else f"Agent 1: {TRUE_SCORE[r['order'][0]]}")
        assert r["task"] == ("Question answering" if row["task"] == "qa" else "Summarization")
        orders.add(tuple(r["order"]))
        # The server saw the answers in exactly the recorded order.
        prompt = next(c["prompt"] for c in calls if c["instruction"] == row["question"])
        assert [b[1].split(":")[0] for b in AGENT_BLOCK.findall(prompt)] == r["order"]
    assert len(orders) > 1, "the order must actually be shuffled"
    body = calls[0]["body"]
    assert body["temperature"] == 0 and body["model"] == "judge-x" and body["max_tokens"] == 2048


def test_malformed_replies_are_asked_once_more_then_kept_raw_and_missing(tmp_path):
    out = tmp_path / "judged.jsonl"
    rows = make_rows(3)
    with judge_server(score_of=score_by_model) as stub:
        stub.responder.script["Question 0?"] = [("reply", "I am unable to grade these answers.")] * 2
        stub.responder.script["Question 1?"] = [("reply", "9 2 2\nsee above")] * 2
        stub.responder.script["Question 2?"] = [("reply", "2 4")]  # wrong count, then the default (right) reply
        summary = judge_rows(rows, out, config(stub), progress=False)
        asked = {q: len(stub.responder.judge_calls(q)) for q in ("Question 0?", "Question 1?", "Question 2?")}
    assert asked == {"Question 0?": 2, "Question 1?": 2, "Question 2?": 2}
    assert summary.parse_errors == 2 and summary.reasked == 3
    judged = {r["id"]: r for r in lines(out)}
    r0 = judged["r0"]
    assert all(r0[f"score_{m}"] is None for m in MODELS)
    assert r0["raw_reply"] == "I am unable to grade these answers." and "no scores" in r0["parse_error"]
    r1 = judged["r1"]
    first = r1["order"][0]
    assert r1[f"score_{first}"] is None and "Agent 1 score 9" in r1["parse_error"]
    assert [r1[f"score_{m}"] for m in r1["order"][1:]] == [2, 2]
    r2 = judged["r2"]
    assert r2["parse_error"] is None and r2["attempts"] == 2
    assert {m: r2[f"score_{m}"] for m in MODELS} == TRUE_SCORE


def test_429_and_5xx_are_retried_honouring_retry_after(tmp_path):
    out = tmp_path / "judged.jsonl"
    rows = make_rows(2)
    with judge_server(score_of=score_by_model) as stub:
        stub.responder.script["Question 0?"] = [("status", 429, {"Retry-After": "1"})]
        stub.responder.script["Question 1?"] = [("status", 503, {"retry-after-ms": "10"}),
                                                ("status", 500, {"retry-after-ms": "10"})]
        summary = judge_rows(rows, out, config(stub), progress=False)
        q0 = stub.responder.judge_calls("Question 0?")
        q1 = stub.responder.judge_calls("Question 1?")
    assert summary.written == 2 and not summary.failed
    assert [c["action"] for c in q0] == ["status", "default"]
    assert q0[1]["time"] - q0[0]["time"] >= 0.9, "the client must wait as long as Retry-After says"
    assert [c["action"] for c in q1] == ["status", "status", "default"]
    judged = {r["id"]: r for r in lines(out)}
    assert judged["r0"]["attempts"] == 2 and judged["r1"]["attempts"] == 3
    assert {m: judged["r1"][f"score_{m}"] for m in MODELS} == TRUE_SCORE


def test_resume_after_failures_and_a_torn_line(tmp_path):
    out = tmp_path / "judged.jsonl"
    rows = make_rows(5)
    with judge_server(score_of=score_by_model) as stub:
        stub.responder.script["Question 4?"] = [("status", 429, {"retry-after-ms": "10"})] * 2
        first = judge_rows(rows[:3] + rows[4:], out, config(stub, max_retries=1), progress=False)
        assert first.written == 3 and [k for k, _ in first.failed] == ["r4|forward"]
        assert set(read_done(out, key=judge.judge_key)) == {"r0|forward", "r1|forward", "r2|forward"}
        with out.open("a") as f:  # a crash in the middle of a write
            f.write('{"id": "r3", "pass": "forw')
        n_before = len(stub.responder.judge_calls())
        second = judge_rows(rows, out, config(stub), progress=False)
        asked = [c["instruction"] for c in stub.responder.judge_calls()[n_before:]]
    assert second.skipped == 3 and second.written == 2 and not second.failed
    assert sorted(asked) == ["Question 3?", "Question 4?"]
    done = read_done(out, key=judge.judge_key)
    assert sorted(done) == [f"r{i}|forward" for i in range(5)]
    assert all(done[f"r{i}|forward"]["score_alpha"] == 4 for i in range(5))


def test_concurrency_is_bounded(tmp_path):
    with judge_server(score_of=score_by_model, delay=0.05) as stub:
        judge_rows(make_rows(8), tmp_path / "j.jsonl", config(stub, concurrency=2), progress=False)
        assert 1 <= stub.max_in_flight <= 2


def test_reverse_pass_and_consistency(tmp_path):
    out = tmp_path / "judged.jsonl"
    rows = make_rows(4)
    with judge_server(score_of=score_by_model) as stub:
        judge_rows(rows, out, config(stub), reverse_pass=True, progress=False)
    judged = lines(out)
    assert len(judged) == 8
    by = {(r["id"], r["pass"]): r for r in judged}
    for row in rows:
        assert by[(row["id"], "reverse")]["order"] == by[(row["id"], "forward")]["order"][::-1]
    report = consistency(judged)
    assert report["overall"] == {"n": 12, "exact": 1.0, "mad": 0.0, "mean_forward": 3.0, "mean_reverse": 3.0}

    # A judge that scores by position, not by content: hand-computed disagreement.
    position_judge = tmp_path / "position.jsonl"
    with judge_server() as stub:
        for row in rows:
            stub.responder.script[row["question"]] = [("reply", "Agent 1: 4\nAgent 2: 3\nAgent 3: 1")] * 2
        judge_rows(rows, position_judge, config(stub), reverse_pass=True, progress=False)
    report = consistency(lines(position_judge))
    # forward (4,3,1) vs reversed (1,3,4) per model: the first and last agent differ by 3, the middle agrees.
    assert report["overall"]["n"] == 12
    assert report["overall"]["exact"] == pytest.approx(1 / 3)
    assert report["overall"]["mad"] == pytest.approx(2.0)
    assert report["mean_by_position"] == {1: 4.0, 2: 3.0, 3: 1.0}


def test_cli_end_to_end_and_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "k")
    monkeypatch.setenv("BAD_KEY", "bad-key")
    inp = tmp_path / "wide.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in make_rows(3)))
    out = tmp_path / "judged.jsonl"
    with judge_server(score_of=score_by_model) as stub:
        rc = judge.main(["--input", str(inp), "--out", str(out), "--base-url", stub.base_url, "--api-key-env",
                         "JUDGE_KEY", "--judge-model", "judge-x", "--reverse-pass", "--no-progress"])
        assert rc == 0
        report = json.loads((tmp_path / "judged.jsonl.consistency.json").read_text())
        assert report["overall"]["exact"] == 1.0
        assert "mean score by agent position" in capsys.readouterr().out
        rc = judge.main(["--input", str(inp), "--out", str(tmp_path / "x.jsonl"), "--base-url", stub.base_url,
                         "--api-key-env", "BAD_KEY", "--model", "judge-x", "--no-progress"])
        assert rc == 2 and "AuthenticationError" in capsys.readouterr().err
    assert judge.main(["--input", str(tmp_path / "nope.jsonl"), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1",
                       "--model", "m"]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"note": "n", "question": "q", "answer_a": "x"}\n')
    assert judge.main(["--input", str(bad), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1",
                       "--model", "m"]) == 2
    assert "at least two" in capsys.readouterr().err
    no_placeholder = tmp_path / "judge.txt"
    no_placeholder.write_text("Grade {note} for {question}.")
    assert judge.main(["--input", str(inp), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1",
                       "--model", "m", "--prompt-file", str(no_placeholder)]) == 2
    assert "{answers}" in capsys.readouterr().err
    assert judge.main(["--input", str(inp), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1",
                       "--model", "m", "--api-key-env", "sk-abc-123"]) == 2
    assert "takes the NAME of an environment variable" in capsys.readouterr().err
    assert judge.main(["--input", str(inp), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1",
                       "--model", "m", "--api-key", "sk-abc"]) == 2
    assert "name it with --api-key-env" in capsys.readouterr().err


def test_cli_prompt_file_and_key_from_a_named_env_var(tmp_path, monkeypatch):
    inp = tmp_path / "wide.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in make_rows(2)))
    prompt_file = tmp_path / "judge.txt"
    prompt_file.write_text("[Instruction Begin]\n{question}\n[Instruction End]\n{note}\n{answers}"
                           "Score the {num_samples} answers ({labels}) on the first line.")
    monkeypatch.setenv("JUDGE_KEY", "k")
    with judge_server(score_of=score_by_model) as stub:
        rc = judge.main(["--input", str(inp), "--out", str(tmp_path / "o.jsonl"), "--base-url", stub.base_url,
                         "--api-key-env", "JUDGE_KEY", "--model", "judge-x", "--prompt-file", str(prompt_file),
                         "--no-progress", "--parse", "reference"])
        prompts = [c["prompt"] for c in stub.responder.judge_calls()]
    assert rc == 0
    assert prompts[0].startswith("[Instruction Begin]\nQuestion ") and prompts[0].endswith(
        "Score the 3 answers (A, B, C) on the first line.")
    judged = lines(tmp_path / "o.jsonl")
    assert all(r["protocol"] == "prompt-file" and r["parse_error"] is None and r["parse"] == "reference"
               for r in judged)
    assert {m: judged[0][f"score_{m}"] for m in MODELS} == TRUE_SCORE


def test_judge_server_speaks_the_protocol_to_the_real_client():
    with judge_server(score_of=lambda a: 4 if "good" in a else 1) as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="k", max_retries=0)
        prompt = ("[Instruction Begin]\nq\n[Instruction End]\n[Agent 1 Answer Begin]\ngood\n[Agent 1 Answer End]\n"
                  "[Agent 2 Answer Begin]\nbad\n[Agent 2 Answer End]")
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
        assert r.choices[0].message.content == "Agent 1: 4\nAgent 2: 1"
        chunks = client.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": prompt}])
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Answer to: q"
        stub.responder.script["q"] = [("status", 429, {"Retry-After": "0"})]
        try:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
            raise AssertionError("expected a 429")
        except openai.RateLimitError as exc:
            assert exc.response.headers["retry-after"] == "0"
