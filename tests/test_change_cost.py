"""What each kind of change costs, as ARCHITECTURE.md states it: a backend is its module plus one registry line, a
page its view and logic modules plus one table row, an export format one writer, a task one table entry. Each test
adds a real new one in exactly those places (new files in a temporary folder, one entry in the table) and shows that
every consumer picks it up."""

from __future__ import annotations

import argparse
import textwrap

import pytest

from asclepius_ui import ask, engines, export, phi_guard, tasks
from asclepius_ui.batch import batch_tasks, make_jobs
from asclepius_ui.ui import pages

NOTE = "DISCHARGE SUMMARY\nPatient treated for CAP with ceftriaxone.\n"

ECHO_BACKEND = '''
"""A backend that answers with the end of its prompt, served "remotely"."""
from dataclasses import dataclass, field

from asclepius_ui.engines.base import Capabilities, Engine, StreamUpdate


@dataclass
class Options:
    echo_prefix: str = field(default="", metadata={"help": "text put before every answer"})


def claims(options):
    return options.model.startswith("echo:")


class EchoEngine(Engine):
    backend = "echo"
    capabilities = Capabilities(tokenizer=False, remote=True)

    def __init__(self, options, own):
        self.model_id, self.template, self.context_length = options.model, options.template or "asclepius", 2048
        self.precision, self.revision, self.notices, self.own = "echo", "1", [], own

    def stream(self, prompt, settings=None, stop_event=None, min_interval=0.05):
        text = self.own.echo_prefix + self.as_prompt(prompt).text.strip().splitlines()[-2]
        yield StreamUpdate(text, 1, 0.0, done=True)


def load(options):
    return EchoEngine(options, options.options_for(Options))
'''


def test_a_backend_is_its_module_and_one_registry_line(tmp_path, monkeypatch):
    (tmp_path / "echo_backend.py").write_text(textwrap.dedent(ECHO_BACKEND))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(engines, "BACKENDS", {"echo": "echo_backend", **engines.BACKENDS})  # the one line
    args = engines.add_engine_arguments(argparse.ArgumentParser()).parse_args(
        ["--model", "echo:m", "--echo-prefix", "Echo: "])  # its flag, generated from its Options
    engine = engines.load_engine(engines.options_from_args(args))  # --backend auto picks it
    assert engine.backend == "echo" and phi_guard.leaves_machine(engine)  # the guard reads its capabilities
    request = ask.Request(NOTE, "What was given?")
    with pytest.raises(ask.Refused, match="Nothing was sent"):
        ask.prepare(engine, request)
    prepared = ask.prepare(engine, ask.Request(NOTE, "What was given?", guard=ask.GUARD_SEND))
    assert ask.generate(prepared).text == "Echo: What was given?"


VIEW = '''
import gradio as gr


def build(ctx):
    from . import notes_logic

    gr.Markdown(notes_logic.greeting(), elem_id="notes-page")
'''
LOGIC = '''
def greeting():
    return "Notes page"
'''


def test_a_page_is_its_view_its_logic_and_one_row(tmp_path, monkeypatch, tiny_engine):
    from asclepius_ui.ui import __path__ as ui_path
    from asclepius_ui.ui.app import build_app
    from asclepius_ui.ui.context import AppContext

    (tmp_path / "notes.py").write_text(VIEW)
    (tmp_path / "notes_logic.py").write_text(LOGIC)
    monkeypatch.setattr("asclepius_ui.ui.__path__", [*ui_path, str(tmp_path)])  # as if the files were in ui/
    monkeypatch.setattr(pages, "PAGES", (*pages.PAGES, pages.Page("Notes", "notes", False, "rater")))  # one row
    assert "notes" in pages.rater_pages("study,notes")  # --rater-pages may grant it
    demo = build_app(AppContext(engine=tiny_engine))
    labels = [b.label for b in demo.blocks.values() if type(b).__name__ == "Tab"]
    texts = [getattr(b, "value", None) for b in demo.blocks.values()]
    assert "Notes" in labels and "Notes page" in texts


def test_an_export_format_is_one_writer(tmp_path, monkeypatch):
    from eval.rows import write_rows

    def write_tsv(f, rows, columns):
        f.write("\t".join(columns) + "\n")
        for r in rows:
            f.write("\t".join(str(r.get(c, "")) for c in columns) + "\n")

    monkeypatch.setitem(export.FORMATS, "tsv", write_tsv)  # the one change
    rows = [{"id": 1, "answer": "=1+1"}]
    export.write_rows(rows, None, "tsv", tmp_path / "a.tsv", progress=False)  # the export (CLI and Admin download)
    write_rows(tmp_path / "study.tsv", rows)  # eval.make_study's writer
    assert (tmp_path / "a.tsv").read_text() == (tmp_path / "study.tsv").read_text() == "id\tanswer\n1\t=1+1\n"
    assert export.format_of("answers.tsv") == "tsv"


def test_a_task_is_one_table_entry(monkeypatch):
    from asclepius_ui.ui.task_picker import on_task_pick

    new = tasks.Task("medrec", "Medication reconciliation",
                     "List the {arg} the patient takes at discharge and what changed since admission.",
                     "Medication group", "e.g. anticoagulants", default_arg="medications")
    monkeypatch.setitem(tasks.TASKS, "medrec", new)  # the one change
    assert "Medication reconciliation" in tasks.task_labels() and "Medication reconciliation" in batch_tasks()
    assert tasks.task_key("medication  RECONCILIATION") == "medrec"
    picked = on_task_pick("Medication reconciliation")
    assert picked.arg_label == "Medication group" and picked.arg_value == "medications"  # its default
    [job] = make_jobs([{"note": NOTE}], ["Medication reconciliation"], None)
    assert job["question"].startswith("List the medications the patient takes")
    refused = ask.Request(NOTE, new.instruction.replace("{arg}", "<medication group>"), task="medrec")
    with pytest.raises(ask.Refused, match="Fill in the medication group"):
        ask.check_request(refused)
