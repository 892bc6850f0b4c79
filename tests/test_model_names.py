"""Honest model names: a local model is named by its folder or file, never by the path to it, in answer footers,
Batch rows (and so exports) and everything keyed by ``Engine.model_id``."""

from __future__ import annotations

from asclepius_ui import batch
from asclepius_ui.conversation import stats_line
from asclepius_ui.demo import SHIPPED, display_name, marker, model_name, model_path
from asclepius_ui.engines import GenerationSettings


def test_a_path_becomes_its_folder_or_file_name_and_other_names_stay():
    assert model_name("/home/someone/assets/demo-model") == "demo-model"
    assert model_name("/home/someone/assets/demo-model/") == "demo-model"
    assert model_name("~/models/Asclepius-Llama3-8B") == "Asclepius-Llama3-8B"
    assert model_name("./models/gemma-3-270m-it-Q4_K_M.gguf") == "gemma-3-270m-it-Q4_K_M.gguf"
    assert model_name(r"C:\Users\someone\models\m.gguf") == "m.gguf"
    assert model_name(SHIPPED) == "demo-model" and model_name(str(SHIPPED.relative_to(SHIPPED.parents[1]))) \
        == "demo-model"
    assert model_name("starmpcc/Asclepius-7B") == "starmpcc/Asclepius-7B"  # a hub id names no one's files
    assert model_name("gpt-4o-mini") == "gpt-4o-mini"


def test_a_local_engine_footer_and_batch_row_carry_the_folder_name(tiny_engine, tiny_bin_model):
    assert tiny_engine.model_id == tiny_bin_model.name and "/" not in tiny_engine.model_id
    assert model_path(tiny_engine) == str(tiny_bin_model)  # the path is still known to the code that needs it
    settings = GenerationSettings(max_new_tokens=3)
    row = batch.answer_job(tiny_engine, {"note": "Admitted with pneumonia.", "question": "Why admitted?"}, settings)
    assert row["model"] == tiny_bin_model.name and str(tiny_bin_model.parent) not in str(row)
    footer = stats_line(tiny_engine.model_id, tiny_engine.precision_label, 3, 0.1)
    assert footer.startswith(f"{tiny_bin_model.name} · ") and str(tiny_bin_model.parent) not in footer
    assert marker(model_path(tiny_engine)) == {} and display_name("A", tiny_engine) == "A"


def test_analysis_names_models_stored_by_path_by_their_folder(tmp_path):
    from asclepius_ui.storage import open_storage
    from eval.report import Sources, analyse, db_sources

    st = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    for i, model in enumerate(("/home/someone/assets/demo-model", "starmpcc/Asclepius-7B")):
        snap = dict(note="n", task="Summarization", instruction="q", prompt="p", answer=f"a{i}", model_id=model,
                    model_revision="r", precision="fp32", template="asclepius", settings={})
        st.save_rating(snapshot=snap, score=3, rater="alice", uid=f"u{i}")
    st.save_comparison(uid="c1", rater="alice", model_a="/srv/models/m.gguf",
                       model_b="/home/someone/assets/demo-model", winner="A", note="n", task="QA", instruction="q",
                       prompt="p", answer_a="x", answer_b="y")
    src = db_sources(st)
    assert sorted(src["app"]["model"]) == ["demo-model", "starmpcc/Asclepius-7B"]
    assert {*src["votes"]["a"], *src["votes"]["b"]} == {"demo-model", "m.gguf"}
    report = analyse(Sources(scores={"app": src["app"]}, votes=src["votes"]), n_boot=100)
    assert all("/home/" not in m for r in report.results for m in r.models)
    st.close()


def test_two_folders_of_the_same_name_are_two_contenders_under_two_names(tmp_path, tiny_bin_model,
                                                                          tiny_safetensors_model):
    import argparse
    import shutil

    from asclepius_ui.demo import distinct_name
    from asclepius_ui.launch import add_arguments, build_context

    assert distinct_name("model", "/a/run1/model", {"demo"}) == "model"
    assert distinct_name("model", "/a/run2/model", {"model"}) == "run2/model"
    assert distinct_name("model", "/a/run2/model", {"model", "run2/model"}) == "model #2"
    first, second = tmp_path / "run1" / "model", tmp_path / "run2" / "model"
    shutil.copytree(tiny_bin_model, first)
    shutil.copytree(tiny_safetensors_model, second)
    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--model", str(first), "--compare-model", str(second), "--no-db", "--device", "cpu"])
    engines = build_context(args).all_engines()
    assert list(engines) == ["model", "run2/model"]  # both stay: before, the second replaced the first
    assert engines["model"] is not engines["run2/model"] and str(tmp_path) not in " ".join(engines)
