"""What train.toy adds for the demo: the picker's own instructions, both exported stages, held-out examples."""

from __future__ import annotations

import json

from asclepius_ui.tasks import TASKS, fill_instruction
from train import toy
from train.notes import make_notes


def test_the_toy_run_trains_the_task_pickers_instructions():
    note = make_notes(1, seed=5)[0]
    pairs = {task: (q, a) for task, q, a in toy.task_pairs(note)}
    assert set(pairs) == set(TASKS) - {"free"}
    assert pairs["summarization"][0] == fill_instruction(TASKS["summarization"])
    abbr = fill_instruction(TASKS["abbreviation"], note.facts["abbr"])
    assert pairs["abbreviation"] == (abbr, note.facts["expansion"])
    rows = toy.qa_rows([note])
    assert len(rows) == len(note.qa) + 8 and all(r["answer"] for r in rows)


def test_held_out_notes_become_examples(tmp_path):
    notes = make_notes(2, seed=9)
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps(r) + "\n" for r in toy.qa_rows(notes)))
    written = toy.write_examples(heldout, tmp_path / "ex")
    assert [p.read_text() for p in written] == [n.text for n in notes]
    assert all(p.name.startswith("demo_") for p in written)
