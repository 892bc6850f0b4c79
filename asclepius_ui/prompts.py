"""Prompt templates and ``build_prompt``: the one place a prompt's bytes are decided.

The Asclepius template is byte-for-byte the one on the model card (its spelling "languge" and the
single space after ``[Instruction End]`` included). Baseline templates are the ones the Asclepius
authors used for their comparisons; ``asclepius-base`` is the Asclepius prompt followed by ``\nResponse: ``, which
they used for the base models (plain LLaMA, PMC-LLaMA).
"""

from __future__ import annotations

import re

from .errors import InputError

ASCLEPIUS = """You are an intelligent clinical languge model.
Below is a snippet of patient's discharge summary and a following instruction from healthcare professional.
Write a response that appropriately completes the instruction.
The response should provide the accurate answer to the instruction, while being concise.

[Discharge Summary Begin]
{note}
[Discharge Summary End]

[Instruction Begin]
{question}
[Instruction End] 
"""

ALPACA = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{question}\n\n### Input:\n{note}\n\n### Response:"
)

MEDALPACA = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{question}\n\n### Input:\n{note}\n\n### Response:\n"
)

VICUNA = """
A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: [The start of the Discharge Summary]
{note}
[The end of the Discharge Summary]
{question} ASSISTANT: 
"""

ASCLEPIUS_BASE = ASCLEPIUS + "\nResponse: "

TEMPLATES: dict[str, str] = {
    "asclepius": ASCLEPIUS,
    "asclepius-base": ASCLEPIUS_BASE,
    "alpaca": ALPACA,
    "medalpaca": MEDALPACA,
    "vicuna": VICUNA,
}


def template_names() -> list[str]:
    """Names accepted by ``build_prompt(template=...)``."""
    return list(TEMPLATES)


def build_prompt(note: str, question: str, template: str = "asclepius") -> str:
    """Format ``note`` and ``question`` into the named template.

    Note and question are stripped of surrounding newlines first, as in training. No BOS is added
    here: the tokenizer adds it exactly once.
    """
    try:
        fmt = TEMPLATES[template]
    except KeyError:
        raise ValueError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}") from None
    return fmt.format(note=note.strip("\r\n"), question=question.strip("\r\n"))


def prompt_parts(note: str, question: str, template: str = "asclepius") -> tuple[str, str | None]:
    """The prompt and its note-only head: everything before the question, for templates that put the note first
    (Asclepius's); ``None`` for templates that ask first. Follow-up questions on one note share that head, so a
    backend can reuse its KV cache (and read the note ahead of the question)."""
    text = build_prompt(note, question, template)
    fmt = TEMPLATES[template]
    at_note, at_question = fmt.find("{note}"), fmt.find("{question}")
    if at_note < 0 or at_question < at_note:
        return text, None
    head = fmt[:at_question].format(note=note.strip("\r\n"))
    return text, head if text.startswith(head) else None



_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_placeholders(template: str, values: dict[str, str], required: tuple[str, ...] = ()) -> str:
    """``template`` with each ``{name}`` for a name in ``values`` replaced; every other brace is left as it is.

    Used for user-supplied prompt files (judge, synthesis), which may contain JSON or other braces. Raises
    ``InputError`` when a name in ``required`` does not appear (at least one of ``a|b`` alternatives).
    """
    present = set(_PLACEHOLDER.findall(template))
    missing = [r for r in required if not present & set(r.split("|"))]
    if missing:
        shown = ", ".join("{" + r.replace("|", "} or {") + "}" for r in missing)
        raise InputError(f"The prompt file lacks the placeholder(s) {shown}.")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)
