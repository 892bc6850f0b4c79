"""The 8 Asclepius tasks plus a free question: label, instruction template and the argument each needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One task: ``instruction`` may hold ``{arg}``, which the user supplies (``arg_label`` says what)."""

    key: str
    label: str
    instruction: str
    arg_label: str | None = None
    arg_placeholder: str = ""
    default_arg: str | None = None  # the argument a batch run (or a bench) uses when none is given

    @property
    def example_arg(self) -> str:
        """An argument that works on most notes: the default, else the placeholder's example (benches use it)."""
        return self.default_arg or self.arg_placeholder.removeprefix("e.g. ")

    @property
    def runs_unattended(self) -> bool:
        """True when the task needs no argument typed per note (none, or it has a default): batch and benches."""
        return not self.needs_arg() or self.default_arg is not None

    def needs_arg(self) -> bool:
        return self.arg_label is not None

    @property
    def has_argument_box(self) -> bool:
        """True when the argument is asked for on its own; QA and free questions are typed as the instruction."""
        return self.needs_arg() and self.instruction != "{arg}"


FREE = "free"

TASKS: dict[str, Task] = {
    t.key: t
    for t in [
        Task(
            "ner",
            "Named entity recognition",
            "Identify all named entities related to the patient's {arg} mentioned in this discharge summary.",
            "Entity type",
            "medical conditions, medications, procedures",
            "medical conditions, medications, procedures",
        ),
        Task(
            "abbreviation",
            "Abbreviation expansion",
            "What is the expanded form of the abbreviation '{arg}' as used in this discharge summary?",
            "Abbreviation",
            "e.g. CHF",
        ),
        Task(
            "relation",
            "Relation extraction",
            "What relations between {arg} and other treatments, tests or problems are described in this "
            "discharge summary?",
            "Entity",
            "e.g. metoprolol",
        ),
        Task(
            "temporal",
            "Temporal information extraction",
            "When did {arg} happen relative to the patient's admission, and what is the timeline of related "
            "events in this discharge summary?",
            "Event",
            "e.g. the chest pain",
        ),
        Task(
            "coreference",
            "Coreference resolution",
            "Which earlier mentions in this discharge summary does '{arg}' refer to?",
            "Expression",
            "e.g. the procedure",
        ),
        Task(
            "paraphrasing",
            "Paraphrasing",
            "Paraphrase the {arg} of this discharge summary in plain language that the patient can understand.",
            "Section",
            "hospital course",
            "hospital course",
        ),
        Task(
            "summarization",
            "Summarization",
            "Summarize the key findings, treatments and discharge plan from this discharge summary.",
        ),
        Task(
            "qa",
            "Question answering",
            "{arg}",
            "Question",
            "e.g. Why was the patient started on warfarin?",
        ),
        Task(FREE, "Free question", "{arg}", "Question", "Ask anything about the note"),
    ]
}


def task_labels() -> list[str]:
    return [t.label for t in TASKS.values()]


def by_label(label: str) -> Task:
    for t in TASKS.values():
        if t.label == label or t.key == label:
            return t
    raise ValueError(f"unknown task {label!r}")


def fill_instruction(task: Task, arg: str | None = "") -> str:
    """The instruction for ``task`` with its argument filled in; empty when a needed argument is missing."""
    arg = (arg or "").strip()
    if task.needs_arg() and not arg:
        return "" if task.instruction == "{arg}" else task.instruction.replace("{arg}", f"<{task.arg_label.lower()}>")
    return task.instruction.format(arg=arg)


def missing_argument(task: Task, instruction: str) -> str | None:
    """A message when ``instruction`` still holds the task's unfilled argument placeholder, else None."""
    if task.has_argument_box and f"<{task.arg_label.lower()}>" in instruction:
        return f"Fill in the {task.arg_label.lower()} for this task."
    return None


# ----- task names as files spell them -------------------------------------------------------------------------
# Other spellings of the paper's eight tasks seen in real files (compared after ``_fold``).
_ALIASES: dict[str, str] = {
    "named entity recognition": "ner",
    "entity recognition": "ner",
    "abbreviation expansion": "abbreviation",
    "relation extraction": "relation",
    "temporal information extraction": "temporal",
    "temporal extraction": "temporal",
    "coreference resolution": "coreference",
    "paraphrase": "paraphrasing",
    "text summarization": "summarization",
    "text summarisation": "summarization",
    "summarisation": "summarization",
    "question answering": "qa",
}


def _fold(name: str) -> str:
    """Lower case, ``_``/``-`` and runs of whitespace as one space, no surrounding space."""
    return " ".join(name.replace("_", " ").replace("-", " ").casefold().split())


def task_key(name: str | None) -> str | None:
    """The key of the task ``name`` spells (key, label or a known alias, case and spacing ignored), else None."""
    folded = _fold(name or "")
    for t in TASKS.values():
        if folded in (_fold(t.key), _fold(t.label)):
            return t.key
    return _ALIASES.get(folded)


def normalize_task(name: str | None) -> str:
    """The one spelling of a task name used to group results.

    One of the paper's 8 tasks (or the free question), however spelled, becomes its label ("Text summarization"
    and "summarization" both give "Summarization"); any other name is folded the same way (case and spacing) and
    kept as its own group, capitalised ("medication  REVIEW" -> "Medication review"); empty stays "".
    """
    key = task_key(name)
    if key is not None:
        return TASKS[key].label
    folded = _fold(name or "")
    return folded[:1].upper() + folded[1:]
