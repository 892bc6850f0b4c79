"""Report generation end to end: a hand-written judged file and a real SQLite ratings DB filled through storage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asclepius_ui.storage import new_uid, open_storage
from asclepius_ui.studies import parse_study_file
from eval import report, stats

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
JUDGED = FIXTURES / "judged.jsonl"
STUDY = FIXTURES / "study.jsonl"

# Expert scores by rater, item and model (the study has items i1-i4).
EXPERT = {
    "e1": {"i1": (4, 2, 3), "i2": (3, 3, 2), "i3": (4, 1, 2), "i4": (3, 2, 3)},
    "e2": {"i1": (4, 1, 2), "i2": (4, 2, 1), "i3": (4, 1, 3), "i4": (3, 2, 4)},
}
MODELS = ("asclepius", "alpaca", "vicuna")


def valid_png(path: Path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def build_ratings_db(folder: Path) -> str:
    """A SQLite ratings DB filled through storage: a study rated by two experts, two A/B votes, one chat rating."""
    url = f"sqlite:///{folder / 'ratings.db'}"
    storage = open_storage(url)
    study_id = storage.create_study("pilot", parse_study_file(STUDY), overlap=2, created_by="admin")
    by_text = {}
    for line in STUDY.read_text().splitlines():
        row = json.loads(line)
        by_text.update({row[f"answer_{m}"]: m for m in MODELS})
    for rater, table in EXPERT.items():
        while (a := storage.next_assignment(study_id, rater)) is not None:
            scores = {x["answer_id"]: (table[a["ext_id"]][MODELS.index(by_text[x["text"]])], "")
                      for x in a["answers"]}
            storage.submit_item(assignment_id=a["assignment_id"], rater=rater, uid=new_uid(), scores=scores,
                                seconds=5.0)
    common = dict(note="n", task="qa", instruction="q", prompt="p", answer_a="x", answer_b="y")
    storage.save_comparison(uid=new_uid(), rater="e1", model_a="asclepius", model_b="alpaca", winner="A", **common)
    storage.save_comparison(uid=new_uid(), rater="e2", model_a="alpaca", model_b="asclepius", winner="tie", **common)
    storage.save_rating(snapshot={"model_id": "asclepius", "note": "n", "instruction": "q", "task": "qa",
                                  "answer": "x"}, score=3, rater="e1", uid=new_uid())
    storage.close()
    return url


@pytest.fixture(scope="module")
def ratings_db(tmp_path_factory) -> str:
    return build_ratings_db(tmp_path_factory.mktemp("db"))


def test_judged_file_report_by_hand(tmp_path):
    rep, figures, path = report.build_report(tmp_path, judged=[JUDGED], n_boot=200)
    (judge,) = rep.results
    means = judge.means.set_index("model")
    assert means.loc["asclepius", "mean"] == pytest.approx(20 / 6)
    assert means.loc["alpaca", "mean"] == pytest.approx(11 / 6)
    assert means.loc["vicuna", "mean"] == pytest.approx(13 / 5) and means.loc["vicuna", "n_items"] == 5
    assert judge.missing == 1  # the unparseable score stays missing, it is not a 0 or a 1
    for m in MODELS:
        assert means.loc[m, "ci_low"] <= means.loc[m, "mean"] <= means.loc[m, "ci_high"]
    # asclepius vs alpaca: wins on i1, i3, i4, i5, i6 and a tie on i2 -> 5.5 / 6.
    assert judge.win_matrix.loc["asclepius", "alpaca"] == pytest.approx(5.5 / 6)
    assert judge.strength.loc["asclepius", "strength"] > judge.strength.loc["vicuna", "strength"] > \
        judge.strength.loc["alpaca", "strength"]
    tasks = judge.task_means.set_index(["task", "model"])
    assert tasks.loc[("Summarization", "asclepius"), "mean"] == pytest.approx(3.5)
    assert judge.distribution.loc["alpaca", 1] == pytest.approx(2 / 6)
    c = rep.consistency
    assert c["per_model"]["asclepius"] == {"n": 3, "exact": 1.0, "mad": 0.0, "mean_forward": pytest.approx(11 / 3),
                                           "mean_reverse": pytest.approx(11 / 3)}
    assert c["per_model"]["alpaca"]["exact"] == pytest.approx(2 / 3)
    assert c["per_model"]["vicuna"]["mad"] == pytest.approx(1 / 3)

    text = path.read_text()
    for heading in ("## LLM judge", "### Mean score by task", "### Comparisons", "## Judge consistency"):
        assert heading in text
    assert "| asclepius | 6 | 3.33 |" in text
    assert "1 unparseable judge replies left out" in text
    assert set(figures) == {"means", "tasks_judge", "distribution_judge", "pairwise_judge"}
    for name, fig in figures.items():
        assert fig.parent == tmp_path and valid_png(fig), name
        assert f"({fig.name})" in text


def test_task_names_are_grouped_however_they_are_spelled(tmp_path):
    rows = [json.loads(line) for line in JUDGED.read_text().splitlines() if line.strip()]
    spellings = {"qa": ["Question Answering", "question  answering"], "summarization": ["Text Summarization",
                                                                                        "text summarization"]}
    seen: dict[str, int] = {}
    for r in rows:
        if r["task"] in spellings:
            i = seen.get(r["task"], 0)
            seen[r["task"]] = i + 1
            r["task"] = spellings[r["task"]][i % 2]
    messy = tmp_path / "messy.jsonl"
    messy.write_text("".join(json.dumps(r) + "\n" for r in rows))
    clean_rep = report.build_report(tmp_path / "a", judged=[JUDGED], n_boot=50)[0]
    messy_rep = report.build_report(tmp_path / "b", judged=[messy], n_boot=50)[0]
    clean, got = clean_rep.results[0].task_means, messy_rep.results[0].task_means
    assert sorted(got["task"].unique()) == sorted(clean["task"].unique())
    assert set(got["task"]) <= {"Question answering", "Summarization", "Abbreviation expansion",
                                "Named entity recognition", "Paraphrasing", "Relation extraction",
                                "Temporal information extraction", "Coreference resolution"}
    assert got.reset_index(drop=True)[["task", "model", "mean"]].equals(clean.reset_index(drop=True)[
        ["task", "model", "mean"]])


def test_db_and_judged_report_with_agreement(tmp_path, ratings_db):
    rep, figures, path = report.build_report(tmp_path, judged=[JUDGED], db_url=ratings_db, n_boot=200)
    by_key = {r.key: r for r in rep.results}
    assert set(by_key) == {"judge", "experts", "app", "votes"}
    experts = by_key["experts"]
    assert experts.raters == ["e1", "e2"] and experts.n_ratings == 24
    means = experts.means.set_index("model")
    assert means.loc["asclepius", "mean"] == pytest.approx((4 + 3 + 4 + 3 + 4 + 4 + 4 + 3) / 8)

    # Krippendorff's alpha from a raters x units matrix built here from the same table.
    matrix = np.array([[table[i][k] for i in sorted(table) for k in np.argsort(MODELS)] for table in EXPERT.values()],
                      dtype=float)
    assert rep.experts_alpha == pytest.approx(stats.krippendorff_alpha(matrix))
    pair = rep.rater_pairs.iloc[0]
    assert (pair["rater_a"], pair["rater_b"], pair["n"]) == ("e1", "e2", 12)
    assert pair["kappa"] == pytest.approx(stats.weighted_kappa(matrix[0].astype(int), matrix[1].astype(int)))
    # e1 gave exactly the judge's forward scores on i1-i4.
    judge_e1 = rep.judge_expert_pairs.set_index("rater_b").loc["e1"]
    assert judge_e1["rater_a"] == "judge:gpt-4" and judge_e1["n"] == 12 and judge_e1["kappa"] == pytest.approx(1.0)
    assert rep.judge_vs_experts["n"] == 12

    votes = by_key["votes"]
    assert votes.win_matrix.loc["asclepius", "alpaca"] == pytest.approx(0.75)  # one win and one tie
    assert by_key["app"].means.set_index("model").loc["asclepius", "mean"] == 3.0

    text = path.read_text()
    for heading in ("## Expert ratings (studies)", "## A/B votes (compare mode)", "## Agreement",
                    "Krippendorff's alpha (ordinal)", "judge vs expert consensus"):
        assert heading in text
    assert {"agreement", "pairwise_experts", "pairwise_votes", "tasks_experts"} <= set(figures)
    assert all(valid_png(p) for p in figures.values())


def test_cli(tmp_path, ratings_db, capsys):
    out = tmp_path / "rep"
    assert report.main(["--judged", str(JUDGED), "--db", ratings_db, "--study", "pilot", "--out", str(out),
                        "--bootstrap", "200"]) == 0
    assert (out / "report.md").exists() and (out / "means.png").exists()
    assert report.main(["--out", str(out)]) == 2
    assert "--judged" in capsys.readouterr().err
    assert report.main(["--db", f"sqlite:///{tmp_path / 'none.db'}", "--out", str(out)]) == 2
    assert "No database" in capsys.readouterr().err
    assert report.main(["--judged", str(FIXTURES / "study.jsonl"), "--out", str(out)]) == 2
    assert "not a judged file" in capsys.readouterr().err


def test_report_says_which_parse_rule_produced_the_judge_table(tmp_path):
    rows = [json.loads(x) for x in JUDGED.read_text().splitlines() if x.strip()]
    strict = report.markdown(report.analyse(report.load_sources([JUDGED]), n_boot=50), {})
    assert "`eval.judge --parse strict`" in strict and "--parse reference" not in strict  # no field: strict
    ref_file = tmp_path / "reference.jsonl"
    ref_file.write_text("".join(json.dumps({**r, "parse": "reference"}) + "\n" for r in rows))
    ref = report.markdown(report.analyse(report.load_sources([ref_file]), n_boot=50), {})
    assert "`eval.judge --parse reference`" in ref and "those zeros are in the means" in ref
    one_ref = tmp_path / "one.jsonl"  # a later file's row replaces the same (id, pass): one row read by the other rule
    one_ref.write_text(json.dumps({**rows[0], "parse": "reference"}) + "\n")
    mixed = report.markdown(report.analyse(report.load_sources([JUDGED, one_ref]), n_boot=50), {})
    assert "`eval.judge --parse" not in mixed and "read by different rules (reference, strict)" in mixed
