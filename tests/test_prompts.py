"""Prompt bytes, templates per registry entry, and the task instructions."""

import pytest

from asclepius_ui.prompts import TEMPLATES, build_prompt
from asclepius_ui.registry import REGISTRY, resolve
from asclepius_ui.tasks import TASKS, by_label, fill_instruction

MODEL_CARD_BYTES = (
    b"You are an intelligent clinical languge model.\n"
    b"Below is a snippet of patient's discharge summary and a following instruction from healthcare professional.\n"
    b"Write a response that appropriately completes the instruction.\n"
    b"The response should provide the accurate answer to the instruction, while being concise.\n"
    b"\n"
    b"[Discharge Summary Begin]\n"
    b"NOTE LINE 1\nNOTE LINE 2\n"
    b"[Discharge Summary End]\n"
    b"\n"
    b"[Instruction Begin]\n"
    b"What is the diagnosis?\n"
    b"[Instruction End] \n"
)


def test_asclepius_prompt_is_byte_identical_to_model_card():
    got = build_prompt("\n\nNOTE LINE 1\nNOTE LINE 2\n\n", "\nWhat is the diagnosis?\n").encode("utf-8")
    assert got == MODEL_CARD_BYTES
    assert b"languge" in got and got.endswith(b"[Instruction End] \n")


def test_only_surrounding_newlines_are_stripped():
    prompt = build_prompt("\r\n  indented first line\n\nlast\n", "q")
    assert "[Discharge Summary Begin]\n  indented first line\n\nlast\n[Discharge Summary End]" in prompt


def test_prompt_has_no_bos_text():
    assert "<s>" not in build_prompt("n", "q")


@pytest.mark.parametrize("name,expected", [
    ("alpaca", "### Instruction:\nQ\n\n### Input:\nN\n\n### Response:"),
    ("medalpaca", "### Instruction:\nQ\n\n### Input:\nN\n\n### Response:\n"),
    ("vicuna", "USER: [The start of the Discharge Summary]\nN\n[The end of the Discharge Summary]\nQ ASSISTANT: \n"),
])
def test_baseline_templates(name, expected):
    assert build_prompt("N", "Q", name).endswith(expected)


def test_unknown_template_is_refused():
    with pytest.raises(ValueError, match="unknown template"):
        build_prompt("n", "q", "llama-chat")


@pytest.mark.parametrize("name,ctx", [
    ("Asclepius-7B", 2048), ("Asclepius-13B", 2048), ("Asclepius-Llama2-7B", 4096), ("Asclepius-Llama2-13B", 4096),
    ("Asclepius-Llama3-8B", 8192), ("Asclepius-Mistral-7B-v0.3", 8192), ("Asclepius-R", 2048),
])
def test_registry_entries(name, ctx):
    spec = REGISTRY[name]
    assert spec.template == "asclepius" and spec.template in TEMPLATES
    assert spec.context_length == ctx
    if spec.hub_id:
        assert resolve(spec.hub_id) is spec
        assert resolve(f"/models/{spec.hub_id.split('/')[1]}") is spec  # a local folder named after it
    assert resolve(name) is spec


def test_asclepius_r_is_local_only():
    assert REGISTRY["Asclepius-R"].local_only and REGISTRY["Asclepius-R"].hub_id is None


def test_unknown_model_gets_asclepius_template_and_a_notice():
    spec = resolve("someone/other-llama")
    assert spec.template == "asclepius" and not spec.known and "Unknown model" in spec.note


def test_eight_tasks_plus_free_question():
    assert len(TASKS) == 9
    labels = {t.label for t in TASKS.values()}
    for label in ["Named entity recognition", "Abbreviation expansion", "Relation extraction",
                  "Temporal information extraction", "Coreference resolution", "Paraphrasing", "Summarization",
                  "Question answering", "Free question"]:
        assert label in labels


def test_tasks_fill_their_argument():
    t = by_label("Abbreviation expansion")
    assert t.needs_arg()
    assert "'CHF'" in fill_instruction(t, " CHF ")
    assert "<abbreviation>" in fill_instruction(t, "")
    assert fill_instruction(by_label("Summarization")).startswith("Summarize")
    assert fill_instruction(by_label("Free question"), "Why warfarin?") == "Why warfarin?"


def test_missing_argument_is_caught():
    from asclepius_ui.tasks import missing_argument

    t = by_label("Abbreviation expansion")
    assert missing_argument(t, fill_instruction(t, "")) == "Fill in the abbreviation for this task."
    assert missing_argument(t, fill_instruction(t, "CHF")) is None
    assert missing_argument(by_label("Free question"), "") is None


def test_asclepius_base_is_the_asclepius_prompt_then_response():
    got = build_prompt("\n\nNOTE LINE 1\nNOTE LINE 2\n\n", "\nWhat is the diagnosis?\n", "asclepius-base")
    assert got.encode("utf-8") == MODEL_CARD_BYTES + b"\nResponse: "
    assert "asclepius-base" in TEMPLATES


@pytest.mark.parametrize("hub_id,template", [("huggyllama/llama-7b", "asclepius-base"),
                                             ("chaoyi-wu/PMC_LLAMA_7B", "asclepius-base"),
                                             ("medalpaca/medalpaca-7b", "medalpaca")])
def test_baselines_use_the_authors_templates(hub_id, template):
    spec = resolve(hub_id)
    assert spec.known and spec.template == template


def test_template_choices_come_from_the_registry_of_templates():
    import argparse

    from asclepius_ui.launch import add_arguments

    args = add_arguments(argparse.ArgumentParser()).parse_args(["--template", "asclepius-base"])
    assert args.template == "asclepius-base"


@pytest.mark.parametrize("raw,label", [
    ("Abbreviation Expansion", "Abbreviation expansion"), ("abbreviation  expansion", "Abbreviation expansion"),
    ("Text Summarization", "Summarization"), ("text summarization", "Summarization"),
    ("NAMED_ENTITY_RECOGNITION", "Named entity recognition"), ("qa", "Question answering"),
    ("Temporal Information Extraction", "Temporal information extraction"),
    ("Medication  REVIEW", "Medication review"), ("medication review", "Medication review"), ("", ""), (None, ""),
])
def test_task_names_normalise_onto_the_papers_eight(raw, label):
    from asclepius_ui.tasks import normalize_task

    assert normalize_task(raw) == label


def test_fill_placeholders_leaves_other_braces_and_checks_required():
    from asclepius_ui.errors import InputError
    from asclepius_ui.prompts import fill_placeholders

    assert fill_placeholders('{note} {"a": 1} {other}', {"note": "N"}) == 'N {"a": 1} {other}'
    with pytest.raises(InputError, match=r"\{question\}"):
        fill_placeholders("{note}", {"note": "N"}, required=("note", "question"))
    assert fill_placeholders("{n}", {"n": "3"}, required=("num|n",)) == "3"
