"""eval.make_study's shaping of wide rows: task names normalised, the task filter spelling-insensitive."""

from eval.make_study import study_rows


def wide(task: str, i: int) -> dict:
    return {"id": f"r{i}", "note": "n", "question": f"q{i}", "task": task, "answer_a": "x", "answer_b": "y"}


def test_task_names_are_normalised_and_filtered_however_spelled():
    rows = [wide("Abbreviation Expansion", 0), wide("abbreviation expansion", 1), wide("Text Summarization", 2),
            wide("Medication REVIEW", 3)]
    built = study_rows(rows)
    assert [r["task"] for r in built.rows] == ["Abbreviation expansion", "Abbreviation expansion", "Summarization",
                                               "Medication review"]
    picked = study_rows(rows, tasks=["ABBREVIATION_expansion", "medication review"])
    assert [r["id"] for r in picked.rows] == ["r0", "r1", "r3"]


def test_the_study_importer_normalises_task_names():
    from asclepius_ui.studies import parse_study_text

    text = "note,question,task,answer_a,answer_b\nn,q1,Text Summarization,x,y\nn,q2,text  summarization,x,y\n"
    assert [i.task for i in parse_study_text(text, "csv").items] == ["Summarization", "Summarization"]
