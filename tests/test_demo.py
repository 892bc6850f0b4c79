"""The shipped demo: examples it was trained for answer recognisably, others say they are beyond it, its measured
held-out exact match is on the page, and `python app.py` with no flags gives a working blind comparison."""

from __future__ import annotations

import argparse
import re

import pytest
from playwright.sync_api import expect

from asclepius_ui.demo import ASSETS, SHIPPED, SHIPPED_BASE, base_model_path, marker
from asclepius_ui.engines import GenerationSettings, LoadOptions, load_engine
from asclepius_ui.examples import BEYOND_DEMO, example_label, example_notes, for_demo
from asclepius_ui.launch import add_arguments, build_context
from asclepius_ui.tasks import TASKS, fill_instruction

ARGS = {"ner": "medical conditions", "abbreviation": None, "relation": None, "temporal": "the follow-up",
        "coreference": "The patient", "paraphrasing": "hospital course", "qa": "What was the discharge diagnosis?"}


@pytest.fixture(scope="module")
def demo():
    return load_engine(LoadOptions(str(SHIPPED), precision="fp32", device="cpu"))


def test_markers_carry_the_measured_exact_match():
    after, before = marker(SHIPPED), marker(SHIPPED_BASE)
    assert after["stage"] == "finetuned" and before["stage"] == "pretrained"
    assert after["heldout_exact_match"] > before["heldout_exact_match"]  # fine-tuning is what makes it answer
    assert after["heldout_rows"] > 0 and set(after["heldout_exact_match_by_task"]) >= {"all", "summarization"}


def test_the_demo_answers_its_examples_for_the_picker_tasks(demo):
    names = [n for n in example_notes() if for_demo(n)]
    assert len(names) >= 2
    note = example_notes()[names[0]]
    abbr = re.search(r"confirmed (\w+)\.", note).group(1)
    drug = re.search(r"continue (.+?)\.", note).group(1)
    dx = re.search(r"Discharge Diagnosis: (.+)", note).group(1).strip()
    hits = 0
    for key, t in TASKS.items():
        if key == "free":
            continue
        arg = {"abbreviation": abbr, "relation": drug}.get(key, ARGS.get(key))
        answer = demo.generate(demo.prompt(note, fill_instruction(t, arg)), GenerationSettings(max_new_tokens=48)).text
        hits += any(fact.lower() in answer.lower() for fact in (dx, drug, abbr))
    assert hits >= 5, hits  # most of the 8 tasks answer with the note's own facts


def test_examples_beyond_the_demo_say_so(demo):
    labels = [example_label(n, demo) for n in example_notes()]
    assert any(BEYOND_DEMO in label for label in labels) and any("demo's style" in label for label in labels)


@pytest.fixture(scope="module")
def no_flags_url(launch_app, tmp_path_factory):
    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--db", f"sqlite:///{tmp_path_factory.mktemp('demo') / 'r.db'}", "--device", "cpu"])
    ctx = build_context(args)  # exactly what `python app.py` builds, plus a throwaway database
    assert base_model_path() is not None and len(ctx.all_engines()) == 2
    return launch_app(ctx)


def test_no_flags_give_a_demo_with_its_score_and_a_working_blind_comparison(no_flags_url, page):
    page.goto(no_flags_url)
    expect(page.locator("#demo-banner")).to_contain_text("measured exact match on held-out notes",
                                                          timeout=30_000)  # a loaded CI machine
    page.get_by_role("tab", name="Compare").click()
    note = next(v for k, v in example_notes().items() if for_demo(k))
    page.locator("#cmp-note textarea").fill(note)
    page.locator("#cmp-instruction textarea").fill("What was the discharge diagnosis?")
    page.locator("#cmp-max-new input[type=number]").fill("24")
    page.locator("#cmp-max-new input[type=number]").press("Enter")
    page.locator("#cmp-run").click()
    expect(page.locator("#cmp-status")).to_contain_text("Both answers are ready", timeout=90_000)
    assert "fine-tuning" not in page.locator("#compare-page").inner_text()  # blind until the vote
    page.locator("#cmp-vote-tie").click()
    reveal = page.locator("#cmp-reveal")
    expect(reveal).to_contain_text("demo after instruction fine-tuning")
    expect(reveal).to_contain_text("demo before instruction fine-tuning")
    assert str(ASSETS) not in reveal.inner_text() and "demo-model-base" in reveal.inner_text()  # names, not paths
