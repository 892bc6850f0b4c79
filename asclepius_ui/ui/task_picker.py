"""The Task dropdown, its argument box and the editable instruction, as one widget for chat and compare."""

from __future__ import annotations

import gradio as gr

from ..tasks import FREE, TASKS, by_label, fill_instruction, task_labels


def task_picker(prefix: str) -> tuple[gr.Dropdown, gr.Textbox, gr.Textbox]:
    """Build the widget; element ids are ``{prefix}task``, ``{prefix}arg`` and ``{prefix}instruction``.

    A task that needs an argument (the abbreviation, the entity...) shows a box for it and fills the
    instruction; question answering and free questions are typed straight into the instruction.
    """
    with gr.Row():
        task = gr.Dropdown(task_labels(), value=TASKS[FREE].label, label="Task", scale=2, elem_id=f"{prefix}task")
        arg = gr.Textbox(label="Argument", visible=False, scale=3, elem_id=f"{prefix}arg")
    instruction = gr.Textbox(label="Instruction", lines=3, placeholder=TASKS[FREE].arg_placeholder,
                             elem_id=f"{prefix}instruction")

    def on_task(label: str, value: str | None):
        t = by_label(label)
        separate = t.has_argument_box
        return (gr.update(label=t.arg_label if separate else "Argument", placeholder=t.arg_placeholder,
                          visible=separate, value=value if separate else ""),
                gr.update(value=fill_instruction(t, value) if separate else "",
                          placeholder="" if separate else t.arg_placeholder))

    def on_arg(label: str, value: str | None):
        t = by_label(label)
        return fill_instruction(t, value) if t.has_argument_box else gr.update()

    task.change(on_task, [task, arg], [arg, instruction], show_progress="hidden")
    arg.change(on_arg, [task, arg], instruction, show_progress="hidden")
    return task, arg, instruction
