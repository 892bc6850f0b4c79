"""Batch answers: file reading, jobs, the shared answer path, Stop, downloads; and the page in a real browser."""

from __future__ import annotations

import csv
import json
import re
import threading

import pytest
from playwright.sync_api import expect

from asclepius_ui import batch
from asclepius_ui.engines import GenerationSettings
from asclepius_ui.errors import InputError
from asclepius_ui.ui import batch_logic
from asclepius_ui.ui.context import AppContext

NOTES = ["DISCHARGE SUMMARY\nTreated for CAP with ceftriaxone.\n", "DISCHARGE SUMMARY\nCHF; furosemide increased.\n"]


@pytest.fixture()
def notes_csv(tmp_path):
    path = tmp_path / "notes.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["id", "note", "question"])
        w.writeheader()
        w.writerow({"id": "a", "note": NOTES[0], "question": "=HYPERLINK(\"x\")"})
        w.writerow({"id": "b", "note": NOTES[1], "question": ""})
    return path


def test_jobs_from_tasks_and_a_question_column(notes_csv, tmp_path):
    rows = batch.read_table(notes_csv)
    jobs = batch.make_jobs(rows, ["Summarization", "Named entity recognition"], "question")
    assert [(j["id"], j["task"]) for j in jobs] == [("a", "summarization"), ("a", "ner"), ("a", "qa"),
                                                    ("b", "summarization"), ("b", "ner")]
    assert jobs[1]["question"].startswith("Identify all named entities related to the patient's medical conditions")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"note": "x"}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        batch.read_table(bad)
    with pytest.raises(InputError, match="'note' column"):
        batch.make_jobs([{"text": "x"}], ["Summarization"], None)
    with pytest.raises(InputError, match="at least one task"):
        batch.make_jobs(rows, [], None)


def test_answers_match_the_engine_and_files_are_private_and_formula_safe(tiny_engine, notes_csv):
    jobs = batch.make_jobs(batch.read_table(notes_csv), ["Summarization"], "question")
    settings = GenerationSettings(max_new_tokens=4)
    rows = list(batch.run_jobs(tiny_engine, jobs, settings, threading.Event()))
    direct = tiny_engine.generate(tiny_engine.prompt(jobs[0]["note"], jobs[0]["question"]), settings)
    assert rows[0]["answer"] == direct.text and rows[0]["error"] == "" and len(rows) == 3
    out_csv, out_jsonl = batch.write_rows(rows, "csv"), batch.write_rows(rows, "jsonl")
    assert oct(out_csv.stat().st_mode & 0o777) == "0o600"
    back = list(csv.DictReader(out_csv.open()))
    assert back[1]["question"].startswith("'=HYPERLINK")  # neutralised in CSV
    assert json.loads(out_jsonl.read_text().splitlines()[1])["question"].startswith("=HYPERLINK")  # exact in JSONL
    out_csv.unlink()
    out_jsonl.unlink()


def test_stop_ends_a_batch_and_keeps_what_was_answered(tiny_engine, notes_csv):
    ctx = AppContext(engine=tiny_engine)
    rid = ctx.new_request()[0]
    gen = batch_logic.run_batch(ctx, rid, str(notes_csv), ["Summarization", "Paraphrasing"], "question", 3, None)
    assert next(gen)[0].startswith("Answering 5 prompts")
    next(gen)  # one answered
    ctx.stop(rid)
    text, rows, files = list(gen)[-1]
    assert text.startswith("Stopped:") and 1 <= len(rows) < 5 and set(files) == {"csv", "jsonl"}


@pytest.fixture(scope="module")
def batch_page(launch_app, tiny_engine, browser):
    """One app and one page for the module's browser tests, on the Batch tab."""
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(launch_app(AppContext(engine=tiny_engine)))
    pg.get_by_role("tab", name="Batch").click()
    yield pg
    context.close()


def _upload(page, path, rows: int, max_new: int, task: str = "Summarization") -> None:
    clear = page.locator("#batch-file button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#batch-file input[type=file]").set_input_files(str(path))
    expect(page.locator("#batch-info")).to_contain_text(f"{rows} rows", timeout=15_000)
    page.locator("#batch-max-new input[type=number]").fill(str(max_new))
    page.locator("#batch-max-new input[type=number]").press("Enter")
    if not page.locator("#batch-tasks").get_by_text(task).count():
        page.locator("#batch-tasks input").click()
        page.get_by_role("option", name=task).click()
        page.keyboard.press("Escape")


def test_batch_page_runs_with_progress_and_downloads(batch_page, notes_csv):
    page = batch_page
    _upload(page, notes_csv, 2, 3)
    page.locator("#batch-run").click()
    expect(page.locator("#batch-status")).to_contain_text("Done: 3 of 3 answered", timeout=60_000)
    expect(page.locator("#batch-csv a, #batch-csv [download]").first).to_be_attached()
    expect(page.locator("#batch-preview")).to_contain_text("summarization")


def test_stop_mid_run_ends_the_batch_early(batch_page, tmp_path):
    """Stop pressed while rows are being answered ends the run there (it once ran on to "Done: N of N")."""
    page, total = batch_page, 40
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "note": NOTES[i % 2]}) + "\n" for i in range(total)))
    _upload(page, path, total, 160)  # rows long enough that the run is still going when Stop is pressed
    page.locator("#batch-run").click()
    expect(page.locator("#batch-status")).to_contain_text(re.compile(r"Answered ([2-9]|[1-3][0-9]) of 40"),
                                                          timeout=60_000)
    page.locator("#batch-stop").click()
    status = page.locator("#batch-status")
    expect(status).to_contain_text("Stopped: ", timeout=60_000)
    k = int(re.search(r"Stopped: (\d+) of 40", status.inner_text()).group(1))
    assert 2 <= k < total


def test_truncate_notes_to_fit_cuts_long_notes_and_says_so(batch_page, tiny_engine, tmp_path):
    """Batch used to fail every note over the context; ticked, "Truncate notes to fit" cuts them and says so."""
    page = batch_page
    long_note = NOTES[1] + "\n".join(f"Day {i}: stable, walked in the hall, ate well." for i in range(300))
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps({"id": i, "note": n}) + "\n" for i, n in (("long", long_note),
                                                                                ("short", NOTES[0]))))
    assert not tiny_engine.budget(tiny_engine.prompt(long_note, "Summarize."), 3).fits
    _upload(page, path, 2, 3)
    page.locator("#batch-truncate input").check()
    page.locator("#batch-keep").get_by_text("Keep the end").click()
    page.locator("#batch-run").click()
    expect(page.locator("#batch-status")).to_contain_text("Done: 2 of 2 answered, 1 from truncated notes",
                                                          timeout=60_000)
    preview = page.locator("#batch-preview")
    expect(preview).to_contain_text("from the start of the note")
    link = page.locator("#batch-jsonl a").first
    rows = [json.loads(line) for line in page.request.get(link.get_attribute("href")).text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert by_id["long"]["truncated"].startswith("cut ") and by_id["long"]["error"] == ""
    assert by_id["long"]["note"] == long_note and not by_id["short"].get("truncated")
    page.locator("#batch-truncate input").uncheck()
