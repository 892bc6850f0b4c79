"""train.pretrain / train.finetune / train.toy on tiny real models, and the FSDP launch configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from asclepius_ui.prompts import build_prompt
from train import finetune, pretrain, toy
from train.args import (
    FinetuneDataArguments,
    FinetuneTrainingArguments,
    LoraArguments,
    ModelArguments,
    PretrainDataArguments,
    PretrainTrainingArguments,
    parse,
)
from train.data import write_jsonl
from train.notes import make_notes
from train.tiny_model import init_model, tiny_llama_config

CONFIGS = Path(__file__).resolve().parent.parent / "train" / "configs"
CPU = ["--use_cpu", "--bf16", "False", "--activation_checkpointing", "False", "--global_batch_size", "0",
       "--report_to", "none", "--learning_rate", "1e-3", "--per_device_train_batch_size", "2",
       "--disable_tqdm", "True", "--optim", "adamw_torch"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny random LLaMA + tokenizer folder, a notes file and an instruction file."""
    root = tmp_path_factory.mktemp("train")
    notes = make_notes(30, seed=5)
    cfg = toy.ToyConfig(vocab_size=400)
    from train.tokenizer import train_sentencepiece

    tok_dir = train_sentencepiece(toy.tokenizer_texts(notes[:10]), root / "tok", vocab_size=cfg.vocab_size)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = init_model(tiny_llama_config(len(tok), hidden=32, layers=2, heads=2, context=512))
    model.save_pretrained(root / "init")
    pretrain.save_tokenizer(tok, root / "init")
    write_jsonl(({"note_id": i, "note": n.text} for i, n in enumerate(notes)), root / "notes.jsonl")
    write_jsonl(toy.qa_rows(notes[:6]), root / "instructions.jsonl")
    return root


class StepRecorder(TrainerCallback):
    def __init__(self):
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_paper_defaults():
    _, _, targs = parse((ModelArguments, PretrainDataArguments, PretrainTrainingArguments),
                        ["--model_name_or_path", "m", "--data_path", "d", "--output_dir", "o", "--use_cpu"])
    assert (targs.learning_rate, targs.lr_scheduler_type.value, targs.warmup_steps, targs.weight_decay) == (
        2e-5, "cosine", 0.03, 0.0)
    assert targs.num_train_epochs == 1 and targs.bf16 and targs.activation_checkpointing
    assert targs.per_device_train_batch_size * targs.gradient_accumulation_steps == 128
    _, dargs, _, ft = parse((ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
                            ["--model_name_or_path", "m", "--data_path", "d", "--use_cpu"])
    assert ft.num_train_epochs == 3 and dargs.model_max_length == 2048 and dargs.template == "asclepius"
    # the reference's cadence and timeouts: log every step, save every 1000 pretraining steps / each fine-tuning epoch
    assert (targs.logging_steps, targs.save_strategy.value, targs.save_steps) == (1, "steps", 1000)
    assert (ft.logging_steps, ft.save_strategy.value) == (1, "epoch")
    assert targs.ddp_timeout == ft.ddp_timeout == 18000
    assert not dargs.match_released  # default: train on what the app sends at inference
    from transformers.utils import is_torch_tf32_available

    assert targs.tf32 is None  # --use_cpu: no tf32
    _, _, gpu = parse((ModelArguments, PretrainDataArguments, PretrainTrainingArguments),
                      ["--model_name_or_path", "m", "--data_path", "d", "--bf16", "False"])
    assert gpu.tf32 is (True if is_torch_tf32_available() else None)


def test_fsdp_leaves_activation_checkpointing_to_the_fsdp_config(monkeypatch):
    """Under FSDP the TrainingArguments kind of checkpointing (a redundant AllGather) stays off by default."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` with an FSDP config sets
    _, _, targs = parse((ModelArguments, PretrainDataArguments, PretrainTrainingArguments),
                        ["--model_name_or_path", "m", "--data_path", "d", "--use_cpu"])
    assert targs.activation_checkpointing is False
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    _, _, _, ft = parse((ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
                        ["--model_name_or_path", "m", "--data_path", "d", "--use_cpu", "--fsdp",
                         "--fsdp_config", str(CONFIGS / "fsdp2_llama.json")])
    assert ft.activation_checkpointing is False
    assert ft.fsdp_plugin_args == {
        "fsdp_version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_cls_names_to_wrap": "LlamaDecoderLayer", "cpu_ram_efficient_loading": True,
        "state_dict_type": "FULL_STATE_DICT", "activation_checkpointing": True, "reshard_after_forward": True}


def test_pretrain_cli_then_resume_continues_global_step(workdir, tmp_path):
    out = tmp_path / "pt"
    args = ["--model_name_or_path", str(workdir / "init"), "--data_path", str(workdir / "notes.jsonl"),
            "--model_max_length", "64", "--output_dir", str(out), "--max_steps", "4", "--save_steps", "2",
            "--logging_steps", "1", *CPU]
    assert pretrain.main(args) == 0
    assert (out / "checkpoint-2").is_dir() and (out / "checkpoint-4").is_dir()
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.model").is_file()
    assert (out / "checkpoint-2" / "tokenizer.model").is_file()  # intermediate checkpoints load on their own

    rec = StepRecorder()
    margs, dargs, targs = parse((ModelArguments, PretrainDataArguments, PretrainTrainingArguments),
                                [a if a != "4" else "6" for a in args] + ["--resume_from_checkpoint", "last"])
    trainer, result = pretrain.run(margs, dargs, targs, callbacks=[rec])
    assert rec.steps == [5, 6]  # continued from checkpoint-4, did not start over
    assert result.global_step == 6 and trainer.state.global_step == 6
    assert (out / "checkpoint-6").is_dir()


def test_pretrain_bad_data_is_a_clear_error(workdir, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("id,body\n1,x\n")
    rc = pretrain.main(["--model_name_or_path", str(workdir / "init"), "--data_path", str(tmp_path / "bad.csv"),
                        "--output_dir", str(tmp_path / "o"), *CPU])
    assert rc == 2 and "no note column" in capsys.readouterr().err


def test_finetune_output_loads_in_the_app_engine(workdir, tmp_path):
    from asclepius_ui.engines import LoadOptions, load_engine

    out = tmp_path / "ft"
    assert finetune.main(["--model_name_or_path", str(workdir / "init"),
                          "--data_path", str(workdir / "instructions.jsonl"), "--model_max_length", "512",
                          "--output_dir", str(out), "--max_steps", "3", "--save_strategy", "no", *CPU]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.model", "generation_config.json"} <= {
        p.name for p in out.iterdir()}
    engine = load_engine(LoadOptions(model=str(out), device="cpu", precision="fp32"))
    note, question = "Pt had CAP.", "Which drug?"
    tok = AutoTokenizer.from_pretrained(workdir / "init")
    assert engine.encode(build_prompt(note, question)) == tok(build_prompt(note, question))["input_ids"]
    assert engine.model.config.eos_token_id == 2


def test_lora_finetune_trains_adapters_and_merges(workdir, tmp_path):
    out = tmp_path / "lora"
    margs, dargs, largs, targs = parse(
        (ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
        ["--model_name_or_path", str(workdir / "init"), "--data_path", str(workdir / "instructions.jsonl"),
         "--model_max_length", "512", "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "no",
         "--lora", "--lora_r", "4", "--lora_target_modules", "q_proj,v_proj", *CPU, "--learning_rate", "5e-2"])
    trainer, _ = finetune.run(margs, dargs, largs, targs)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert (out / "adapter" / "adapter_config.json").is_file()
    base = load_file(workdir / "init" / "model.safetensors")
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(merged[key], base[key])  # adapter merged into q_proj
    assert torch.equal(merged["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])


def _launch_env(config: Path) -> dict[str, str]:
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config), "-m", "train.pretrain"])
    args = _validate_launch_command(args)[0]
    return prepare_multi_gpu_env(args)


@pytest.mark.parametrize("name", ["fsdp_7b_8xa100.yaml", "fsdp_13b_8xa100.yaml"])
def test_fsdp_configs_are_fsdp2_with_fsdp_activation_checkpointing(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    cfg = load_config_from_file(str(CONFIGS / name))
    assert cfg.distributed_type == DistributedType.FSDP
    assert cfg.num_processes == 8 and cfg.num_machines == 1 and cfg.mixed_precision == "bf16"
    assert cfg.fsdp_config["fsdp_version"] == 2 and cfg.fsdp_config["fsdp_reshard_after_forward"] is True
    assert cfg.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert not {"fsdp_sharding_strategy", "fsdp_backward_prefetch", "fsdp_forward_prefetch",
                "fsdp_use_orig_params"} & set(cfg.fsdp_config)  # FSDP1-only options
    env = _launch_env(CONFIGS / name)  # what `accelerate launch` hands to the 8 processes
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "true" and env["FSDP_ACTIVATION_CHECKPOINTING"] == "true"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "LlamaDecoderLayer"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_docs_use_fsdp2_only():
    """Every documented launch uses the FSDP2 configs; the deprecated `--fsdp "<string>"` form is gone."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "training.md").read_text()
    commands = "\n".join(block.split("\n", 1)[1] for block in docs.split("```")[1::2] if block.startswith("bash"))
    assert "accelerate launch" in commands and '--fsdp "' not in commands and "fsdp_version: 1" not in docs
    assert "--fsdp --fsdp_config train/configs/fsdp2_llama.json" in commands
    for name in ("fsdp_7b_8xa100.yaml", "fsdp_13b_8xa100.yaml"):
        assert f"train/configs/{name}" in docs


def test_attention_backend_choice():
    assert pretrain.attention_backend("eager") == "eager"
    expected = "flash_attention_2" if torch.cuda.is_available() and _has_flash() else "sdpa"
    assert pretrain.attention_backend("auto") == expected


def _has_flash() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def test_toy_short_run_end_to_end(tmp_path, capsys):
    """The toy path at a very small size: corpus, tokenizer, pretrain, fine-tune, eval, demo export."""
    cfg = toy.ToyConfig(train_notes=40, heldout_notes=2, hidden=32, layers=2, heads=2, vocab_size=400,
                        pretrain_epochs=1, finetune_epochs=1, batch_size=8, max_new_tokens=8)
    result = toy.run_toy(tmp_path / "toy", cfg)
    assert result["before"] == 0.0  # a random model; that fine-tuning raises it is the test above
    for part in ("data/notes.jsonl", "data/instructions.jsonl", "data/heldout.jsonl", "tokenizer/tokenizer.model",
                 "pretrain/model.safetensors", "finetune/model.safetensors", "toy_result.json"):
        assert (tmp_path / "toy" / part).is_file(), part
    held = {json.loads(x)["note"] for x in (tmp_path / "toy/data/heldout.jsonl").read_text().splitlines()}
    seen = {json.loads(x)["note"] for x in (tmp_path / "toy/data/notes.jsonl").read_text().splitlines()}
    assert held and not held & seen
    demo = toy.export_demo(result["model_dir"], tmp_path / "demo")
    marker = json.loads((demo / "asclepius_demo.json").read_text())
    assert marker["demo"] is True and marker["not_for_clinical_use"] is True
    assert (demo / "tokenizer.model").is_file()
    assert json.loads((demo / "config.json").read_text())["max_position_embeddings"] == toy.DEMO_CONTEXT


def test_qlora_finetune_on_4bit_base(workdir, tmp_path):
    out = tmp_path / "qlora"
    margs, dargs, largs, targs = parse(
        (ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
        ["--model_name_or_path", str(workdir / "init"), "--data_path", str(workdir / "instructions.jsonl"),
         "--model_max_length", "512", "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "no",
         "--qlora", "--lora_r", "4", *CPU])
    trainer, result = finetune.run(margs, dargs, largs, targs)
    params = dict(trainer.model.named_parameters())
    assert params["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"].dtype == torch.uint8
    assert result.global_step == 2 and (out / "adapter" / "adapter_model.safetensors").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)  # merged onto the unquantised base
    assert merged.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32


def test_finetuning_raises_exact_match_on_what_it_was_taught(workdir, tmp_path):
    """Fine-tuning must change answers the right way: exact match on its own instruction rows goes from the random
    model's 0 to most of them (the toy run's held-out figure is measured by `python -m train.toy`)."""
    rows = [json.loads(x) for x in (workdir / "instructions.jsonl").read_text().splitlines()][:6]
    taught = tmp_path / "taught.jsonl"
    write_jsonl(rows, taught)
    out = tmp_path / "ft"
    cpu = [a if a != "1e-3" else "1e-2" for a in CPU]  # a faster learning rate for a few dozen steps
    assert finetune.main(["--model_name_or_path", str(workdir / "init"), "--data_path", str(taught),
                          "--model_max_length", "512", "--output_dir", str(out), "--max_steps", "150",
                          "--save_strategy", "no", *cpu]) == 0
    before = toy.exact_match(workdir / "init", rows, max_new_tokens=24)
    after = toy.exact_match(out, rows, max_new_tokens=24)
    assert before == 0.0 and after >= 0.5, (before, after)


def _sgd_gradient(workdir, data: Path, out: Path, weighting: str) -> dict[str, torch.Tensor]:
    """The gradient of one fine-tuning step (micro-batches of 1, 2 accumulated, plain SGD at lr 1, no clipping):
    init - after."""
    margs, dargs, largs, targs = parse(
        (ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
        ["--model_name_or_path", str(workdir / "init"), "--data_path", str(data), "--model_max_length", "512",
         "--output_dir", str(out), "--num_train_epochs", "1", "--save_strategy", "no", *CPU,
         "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2", "--optim", "sgd",
         "--learning_rate", "1.0", "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--max_grad_norm", "0",
         "--loss_weighting", weighting])
    trainer, _ = finetune.run(margs, dargs, largs, targs)
    init = load_file(workdir / "init" / "model.safetensors")
    return {n: init[n] - p.detach() for n, p in trainer.model.named_parameters() if n in init}


def test_loss_weighting_released_is_the_per_micro_batch_mean(workdir, tmp_path):
    """Two examples of unequal answer length in two micro-batches: `released` gives the mean of the two examples'
    own means (transformers 4.32), `tokens` weighs every answer token alike; the gradients differ."""
    from train.data import build_instruction_dataset

    rows = [{"note": "Pt had CAP, treated with ceftriaxone.", "question": "Which drug?", "answer": "ceftriaxone"},
            {"note": "Pt had CHF.", "question": "Summarize the hospital course.",
             "answer": "Admitted with leg swelling and shortness of breath, treated with furosemide, improved and "
                       "was discharged home to follow up with cardiology in two weeks."}]
    data = write_jsonl(rows, tmp_path / "two.jsonl")
    got = {w: _sgd_gradient(workdir, data, tmp_path / w, w) for w in ("released", "tokens")}

    tok = AutoTokenizer.from_pretrained(workdir / "init")
    model = AutoModelForCausalLM.from_pretrained(workdir / "init", dtype=torch.float32)
    ds, _ = build_instruction_dataset(rows, tok, 512)
    losses, counts = [], []
    for ex in ds:
        labels = torch.tensor([ex["labels"]])
        losses.append(model(input_ids=torch.tensor([ex["input_ids"]]), labels=labels).loss)  # this example's mean
        counts.append(int((labels[0, 1:] != -100).sum()))
    assert counts[0] != counts[1]
    expected = {"released": (losses[0] + losses[1]) / 2,
                "tokens": (losses[0] * counts[0] + losses[1] * counts[1]) / sum(counts)}
    names = [n for n, _ in model.named_parameters()]
    for weighting, loss in expected.items():
        grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
        for name, g in zip(names, grads, strict=True):
            torch.testing.assert_close(got[weighting][name], g, rtol=1e-3, atol=2e-6, msg=f"{weighting} {name}")
    key = "model.layers.0.mlp.up_proj.weight"
    assert (got["released"][key] - got["tokens"][key]).abs().max() > 100 * 2e-6  # the switch changes the step

    # One example: the epoch's only window holds 1 of the 2 accumulation steps. 4.32 still divided by 2.
    one = write_jsonl(rows[:1], tmp_path / "one.jsonl")
    half = _sgd_gradient(workdir, one, tmp_path / "one-released", "released")
    whole = _sgd_gradient(workdir, one, tmp_path / "one-tokens", "tokens")
    grads = torch.autograd.grad(losses[0], list(model.parameters()))
    for name, g in zip(names, grads, strict=True):
        torch.testing.assert_close(half[name], g / 2, rtol=1e-3, atol=2e-6, msg=name)
        torch.testing.assert_close(whole[name], g, rtol=1e-3, atol=2e-6, msg=name)


def test_match_released_trains_with_the_released_loss_weighting():
    _, dargs, _, targs = parse((ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
                               ["--model_name_or_path", "m", "--data_path", "d", "--use_cpu", "--match-released"])
    assert targs.resolved_loss_weighting(dargs.match_released) == "released"
    _, dargs, _, targs = parse((ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
                               ["--model_name_or_path", "m", "--data_path", "d", "--use_cpu"])
    assert targs.resolved_loss_weighting(dargs.match_released) == "tokens"
    _, dargs, _, targs = parse((ModelArguments, FinetuneDataArguments, LoraArguments, FinetuneTrainingArguments),
                               ["--model_name_or_path", "m", "--data_path", "d", "--use_cpu", "--match-released",
                                "--loss-weighting", "tokens"])
    assert targs.resolved_loss_weighting(dargs.match_released) == "tokens"
