"""Follow-up instructions, the line under each answer, and rating snapshots."""

from asclepius_ui.conversation import HISTORY_NOTE, snapshot, stats_line, with_history
from asclepius_ui.prompts import build_prompt


def test_history_is_folded_into_one_instruction():
    turns = [("Q1?", "A1."), ("Q2?", "A2."), ("Q3?", "A3."), ("Q4?", "A4.")]
    text = with_history("What next?", turns)
    assert text.startswith(HISTORY_NOTE)
    assert "Q1?" not in text and "Q: Q2?\nA: A2." in text and text.endswith("Current instruction: What next?")
    prompt = build_prompt("note", text)
    assert prompt.count("[Instruction Begin]") == 1  # still the official single-turn template


def test_no_history_leaves_the_instruction_alone():
    assert with_history("Q?", []) == "Q?"
    assert with_history("Q?", [("asked", "")]) == "Q?"  # an empty (stopped) answer is not history
    assert with_history("Q?", [("a", "b")], max_turns=0) == "Q?"


def test_stats_line():
    line = stats_line("m", "bf16", 50, 2.0, stopped=True)
    assert line == "m · bf16 · 50 tokens · 2.00 s · 25.0 tokens/s · stopped"
    assert "0.0 tokens/s" in stats_line("m", "fp32", 0, 0.0)


def test_snapshot_keeps_what_was_judged():
    snap = snapshot(note="n", task="Summarization", instruction="i", prompt="p", answer="a", model_id="m",
                    revision="r", precision="fp32", template="asclepius", settings={"max_new_tokens": 4},
                    started_at="s", finished_at="f", seconds=1.23456, new_tokens=4)
    assert snap["generation_seconds"] == 1.2346 and snap["model_revision"] == "r" and snap["settings"] == {
        "max_new_tokens": 4}
