"""eval.generate with the app's engine on a real tiny model, over a real local endpoint, and eval.make_study."""

from __future__ import annotations

import csv
import json

import pytest

from asclepius_ui.engines import GenerationSettings
from asclepius_ui.prompts import build_prompt
from asclepius_ui.studies import parse_study_file
from eval import generate, make_study
from eval.rows import merge_answers, read_rows, row_id
from train.notes import make_notes

from .cut_answers import decoded
from .openai_server import OpenAIServer, instruction_of, prompt_of

NEW = 6


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    rows = []
    for i, note in enumerate(make_notes(3, seed=2)):
        for task, question, _ in note.qa[:2]:
            rows.append({"note": note.text, "question": question, "task": task, "source": f"n{i}"})
    rows[0]["id"] = "given-id"
    return rows


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_same_engine_same_template_exact_answers_and_resume(tmp_path, tiny_bin_model, tiny_engine, questions):
    inp, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    write_jsonl(inp, questions[:4])
    args = ["--model", str(tiny_bin_model), "--input", str(inp), "--out", str(out), "--precision", "fp32",
            "--device", "cpu", "--max-new-tokens", str(NEW), "--no-progress", "--name", "tiny", "--preset", "greedy"]
    assert generate.main(args) == 0
    rows = lines(out)
    assert [r["id"] for r in rows] == ["given-id"] + [row_id(q) for q in questions[1:4]]
    settings = GenerationSettings(max_new_tokens=NEW)
    for q, r in zip(questions, rows, strict=False):
        assert {k: r[k] for k in q if k != "id"} == {k: v for k, v in q.items() if k != "id"}  # input kept
        expected = tiny_engine.generate(build_prompt(q["note"], q["question"], "asclepius"), settings)
        assert r["answer"] == expected.text and r["new_tokens"] == expected.new_tokens
        assert (r["model"], r["template"], r["precision"], r["preset"]) == ("tiny", "asclepius", "fp32", "greedy")
        assert r["seconds"] >= 0

    # Resume: only the two new rows are answered; nothing already written changes.
    before = out.read_text()
    write_jsonl(inp, questions)
    assert generate.main(args + ["--batch-size", "2"]) == 0
    after = lines(out)
    assert out.read_text().startswith(before) and len(after) == len(questions)
    assert sorted(r["id"] for r in after) == sorted(row_id(q) for q in questions)
    assert generate.main(args) == 0 and len(lines(out)) == len(questions)


def test_batched_generation_matches_the_engine_batch(tmp_path, tiny_engine, questions):
    out = tmp_path / "a.jsonl"
    settings = GenerationSettings(max_new_tokens=NEW)
    summary = generate.generate_rows(tiny_engine, questions, out, settings, batch_size=3, name="tiny",
                                     progress=False)
    assert summary.written == len(questions) and not summary.failed
    got = {r["id"]: r["answer"] for r in lines(out)}
    for q in questions:
        single = tiny_engine.generate(tiny_engine.prompt(q["note"], q["question"]), settings).text
        assert got[row_id(q)] == single


def test_template_and_4bit_flags_reach_the_engine(tmp_path, tiny_bin_model, questions):
    inp, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    write_jsonl(inp, questions[:1])
    assert generate.main(["--model", str(tiny_bin_model), "--input", str(inp), "--out", str(out), "--device", "cpu",
                          "--load-in-4bit", "--template", "alpaca", "--max-new-tokens", "2", "--no-progress"]) == 0
    row = lines(out)[0]
    assert (row["precision"], row["template"], row["model"]) == ("4bit", "alpaca", tiny_bin_model.name)


def test_too_long_prompt_fails_that_row_only(tmp_path, tiny_engine, questions):
    rows = [dict(questions[0], id="long", note=questions[0]["note"] * 20), questions[1]]
    summary = generate.generate_rows(tiny_engine, rows, tmp_path / "a.jsonl",
                                     GenerationSettings(max_new_tokens=NEW), progress=False)
    assert summary.written == 1 and summary.failed[0][0] == "long" and "context" in summary.failed[0][1]


def test_long_note_action_is_decided_by_the_budget():
    assert generate.long_note_action(600, 400, 1024, "truncate-note") is None  # fits exactly
    assert generate.long_note_action(625, 400, 1024, "truncate-note") == "truncate-note"
    assert generate.long_note_action(None, 400, 1024, "as-reference") is None  # cannot count: the server decides
    with pytest.raises(generate.InputError, match="--long-notes"):
        generate.long_note_action(1, 1, 2, "skip")


def test_long_notes_fail_truncate_or_generate_as_the_reference(tmp_path, tiny_bin_model, tiny_engine, questions,
                                                                capsys):
    """A note too long for the 1,024-token tiny model: failed by default, answered on a cut note with
    truncate-note, answered from the whole prompt past the context with as-reference; the count is printed."""
    long_row = dict(questions[0], id="long", note=questions[0]["note"] * 12)
    inp = tmp_path / "q.jsonl"
    write_jsonl(inp, [long_row, questions[1]])
    settings = GenerationSettings(max_new_tokens=NEW)
    n_prompt = tiny_engine.count_tokens(tiny_engine.prompt(long_row["note"], long_row["question"]))
    assert n_prompt + NEW > tiny_engine.context_length
    base = ["--model", str(tiny_bin_model), "--input", str(inp), "--precision", "fp32", "--device", "cpu",
            "--max-new-tokens", str(NEW), "--no-progress", "--preset", "greedy"]
    got = {}
    for mode in ("fail", "truncate-note", "as-reference"):
        out = tmp_path / f"{mode}.jsonl"
        rc = generate.main(base + ["--out", str(out), "--long-notes", mode])
        assert rc == (1 if mode == "fail" else 0)
        assert f"1 row(s) longer than the context (prompt + new tokens): {generate.LONG_NOTE_DONE[mode]}" in \
            capsys.readouterr().err
        got[mode] = {r["id"]: r for r in lines(out)}
    assert "long" not in got["fail"] and len(got["fail"]) == 1
    cut = got["truncate-note"]["long"]
    assert cut["note"] == long_row["note"] and cut["note_cut_tokens"] > 0  # the output keeps the whole note
    kept = tiny_engine.truncate_note(long_row["note"], long_row["question"], NEW).kept
    assert cut["answer"] == tiny_engine.generate(tiny_engine.prompt(kept, long_row["question"]), settings).text
    ref = got["as-reference"]["long"]
    assert "note_cut_tokens" not in ref and ref["new_tokens"] >= 1
    context = tiny_engine.context_length
    with generate.context_at_least(tiny_engine, n_prompt + NEW):
        whole = tiny_engine.generate(tiny_engine.prompt(long_row["note"], long_row["question"]), settings)
    assert tiny_engine.context_length == context  # put back after the run
    assert ref["answer"] == whole.text


def test_cli_errors_exit_2(tmp_path, capsys, tiny_bin_model):
    out = str(tmp_path / "a.jsonl")
    base = ["--model", str(tiny_bin_model), "--out", out, "--device", "cpu"]
    assert generate.main(base + ["--input", str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"note": "n", "question": "q", "task": "qa"}\n\n{"note": "n", oops}\n')
    assert generate.main(base + ["--input", str(bad)]) == 2
    assert "line 3: not valid JSON" in capsys.readouterr().err
    cols = tmp_path / "cols.csv"
    cols.write_text("note,question\nsome note,some question\n")
    assert generate.main(base + ["--input", str(cols)]) == 2
    assert "missing column(s) task" in capsys.readouterr().err
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"note": "n", "question": "q", "task": "qa"}\n')
    assert generate.main(["--model", str(tmp_path), "--input", str(ok), "--out", out]) == 2
    assert "config.json" in capsys.readouterr().err
    assert not (tmp_path / "a.jsonl").exists() or (tmp_path / "a.jsonl").read_text() == ""


def write_csv(path, rows) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "note", "question", "task"])
        w.writeheader()
        w.writerows({k: q.get(k, "") for k in ("id", "note", "question", "task")} for q in rows)


def test_remote_endpoint(tmp_path, questions, monkeypatch):
    inp = tmp_path / "q.csv"
    write_csv(inp, questions[:3])
    remote_out = tmp_path / "remote.jsonl"
    with OpenAIServer(lambda body: f"Answer to: {instruction_of(prompt_of(body))}", api_key="k") as stub:
        monkeypatch.setenv("STUB_KEY", "k")
        rc = generate.main(["--base-url", stub.base_url, "--api-key-env", "STUB_KEY", "--api-mode", "chat",
                            "--remote-model", "served-b", "--preset", "greedy",
                            "--input", str(inp), "--out", str(remote_out), "--no-progress", "--concurrency", "2"])
        prompts = [prompt_of(r) for r in stub.requests]
    assert rc == 0 and all(r["stream"] for r in stub.requests)
    remote = lines(remote_out)
    assert {r["answer"] for r in remote} == {f"Answer to: {q['question']}" for q in questions[:3]}
    assert {(r["model"], r["precision"], r["template"]) for r in remote} == {("served-b", "remote", "asclepius")}
    assert sorted(prompts) == sorted(build_prompt(q["note"], q["question"]) for q in questions[:3])


def test_paper_preset_on_a_backend_without_beams_is_refused_before_any_request(tmp_path, questions, monkeypatch,
                                                                                capsys):
    inp = tmp_path / "q.csv"
    write_csv(inp, questions[:2])
    monkeypatch.setenv("STUB_KEY", "k")
    with OpenAIServer(lambda body: "never", api_key="k") as stub:
        rc = generate.main(["--base-url", stub.base_url, "--api-key-env", "STUB_KEY", "--api-mode", "chat",
                            "--model", "served-b", "--input", str(inp), "--out", str(tmp_path / "a.jsonl"),
                            "--no-progress"])
        sent = [r for r in stub.requests if "messages" in r or "prompt" in r]
    assert rc == 2 and not sent
    assert "no beam search" in capsys.readouterr().err


def test_make_study_from_two_models(tmp_path, tiny_bin_model, questions, capsys):
    inp = tmp_path / "q.csv"
    write_csv(inp, questions[:3])
    outs = {}
    for name, template in (("tiny-a", "asclepius"), ("tiny-b", "alpaca")):
        outs[name] = tmp_path / f"{name}.jsonl"
        assert generate.main(["--model", str(tiny_bin_model), "--name", name, "--template", template, "--input",
                              str(inp), "--out", str(outs[name]), "--device", "cpu", "--max-new-tokens", "3",
                              "--no-progress"]) == 0
    local_out, other_out = outs["tiny-a"], outs["tiny-b"]

    wide = merge_answers([read_rows(local_out), read_rows(other_out)])
    assert [r["id"] for r in wide] == [row_id(q) for q in questions[:3]]
    assert set(wide[0]) == {"id", "note", "question", "task", "answer_tiny-a", "answer_tiny-b"}

    for suffix in ("jsonl", "csv"):
        study = tmp_path / f"study.{suffix}"
        assert make_study.main(["--answers", str(local_out), str(other_out), "--out", str(study)]) == 0
        parsed = parse_study_file(study)  # the app's own importer
        assert parsed.models == ["tiny-a", "tiny-b"]
        assert [it.ext_id for it in parsed.items] == [row_id(q) for q in questions[:3]]
        assert parsed.items[1].answers["tiny-b"] == lines(other_out)[1]["answer"]

    assert make_study.main(["--answers", str(local_out), "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "at least two" in capsys.readouterr().err
    assert make_study.main(["--wide", str(tmp_path / "study.jsonl"), "--models", "tiny-a", "nope", "--out",
                            str(tmp_path / "s.jsonl")]) == 2
    assert "No answers for nope" in capsys.readouterr().err
    sampled = tmp_path / "sampled.jsonl"
    assert make_study.main(["--wide", str(tmp_path / "study.jsonl"), "--sample", "2", "--out", str(sampled)]) == 0
    assert len(lines(sampled)) == 2


def test_paper_preset_is_the_default_and_reaches_generate(tmp_path, tiny_bin_model, tiny_engine, questions):
    """Without --preset, eval.generate decodes as the authors evaluated: 5 beams, sampling, temperature 1."""
    import torch

    inp, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    write_jsonl(inp, questions[:1])
    torch.manual_seed(7)
    assert generate.main(["--model", str(tiny_bin_model), "--input", str(inp), "--out", str(out), "--device", "cpu",
                          "--max-new-tokens", str(NEW), "--no-progress"]) == 0
    row = lines(out)[0]
    assert row["preset"] == "paper"
    paper = GenerationSettings.from_preset("paper", max_new_tokens=NEW)
    assert (paper.num_beams, paper.do_sample, paper.temperature) == (5, True, 1.0)
    ids = torch.tensor([tiny_engine.encode(build_prompt(questions[0]["note"], questions[0]["question"]))])
    torch.manual_seed(7)  # the same draw, straight through transformers with the authors' arguments
    with torch.inference_mode():
        direct = tiny_engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                                            num_beams=5, do_sample=True, temperature=1.0, top_p=1.0,
                                            eos_token_id=tiny_engine.eos_token_ids,
                                            pad_token_id=tiny_engine.tokenizer.pad_token_id or 0)
    new = tiny_engine._strip_eos(direct[0, ids.shape[1]:].tolist())
    assert row["answer"] == decoded(tiny_engine, new)
