"""The Task dropdown, its argument box and the editable instruction, as one widget for chat and compare."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..tasks import FREE, TASKS, by_label, fill_instruction, task_labels


@dataclass(frozen=True)
class PickerState:
    """What the argument box and the instruction show after a task is picked."""

    arg_visible: bool
    arg_label: str
    arg_placeholder: str
    arg_value: str
    instruction: str
    instruction_placeholder: str


def on_task_pick(label: str) -> PickerState:
    """The widget's state for task ``label``: every task leaves a ready instruction or an obvious box to fill.

    Picking a task starts its argument afresh (the previous task's is never carried over: an entity type is
    no abbreviation): empty, or the task's ``default_arg``. A task with an argument shows its box
    and an instruction with the placeholder to fill (or its default filled in); a task with no
    argument (summarization) gets its whole instruction; question answering and free questions clear the
    instruction and say what to type there.
    """
    t = by_label(label)
    if t.has_argument_box:
        value = t.default_arg or ""
        return PickerState(True, t.arg_label or "Argument", t.arg_placeholder, value, fill_instruction(t, value), "")
    if not t.needs_arg():
        return PickerState(False, "Argument", "", "", fill_instruction(t), "")
    return PickerState(False, "Argument", "", "", "", t.arg_placeholder)


def task_picker(prefix: str) -> tuple[gr.Dropdown, gr.Textbox, gr.Textbox]:
    """Build the widget; element ids are ``{prefix}task``, ``{prefix}arg`` and ``{prefix}instruction``."""
    with gr.Row():
        task = gr.Dropdown(task_labels(), value=TASKS[FREE].label, label="Task", scale=2, elem_id=f"{prefix}task")
        arg = gr.Textbox(label="Argument", visible=False, scale=3, elem_id=f"{prefix}arg")
    instruction = gr.Textbox(label="Instruction", lines=2, max_lines=8, placeholder=TASKS[FREE].arg_placeholder,
                             elem_id=f"{prefix}instruction")

    def on_task(label: str):
        s = on_task_pick(label)
        return (gr.update(label=s.arg_label, placeholder=s.arg_placeholder, visible=s.arg_visible, value=s.arg_value),
                gr.update(value=s.instruction, placeholder=s.instruction_placeholder))

    def on_arg(label: str, value: str | None):
        t = by_label(label)
        return fill_instruction(t, value) if t.has_argument_box else gr.update()

    # Page state only, answered at once (not queued behind a generation): a reply that came late would overwrite
    # what the clinician typed meanwhile.
    task.change(on_task, task, [arg, instruction], show_progress="hidden", api_visibility="private", queue=False)
    arg.change(on_arg, [task, arg], instruction, show_progress="hidden", api_visibility="private", queue=False)
    return task, arg, instruction
