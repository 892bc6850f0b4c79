"""Two-process ``torchrun`` (gloo, CPU) fine-tuning: a run killed after a checkpoint and resumed ends with weights
identical to an uninterrupted run; intermediate checkpoints carry ``tokenizer.model``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from tests.ports import free_port
from train import pretrain, toy
from train.data import write_jsonl
from train.notes import make_notes
from train.tiny_model import init_model, tiny_llama_config
from train.tokenizer import train_sentencepiece

ROOT = Path(__file__).resolve().parent.parent


def _torchrun(entry: list[str], args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), *entry, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    notes = make_notes(8, seed=13)
    tok_dir = train_sentencepiece(toy.tokenizer_texts(notes[:4]), root / "tok", vocab_size=400)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    init_model(tiny_llama_config(len(tok), hidden=32, layers=2, heads=2, context=512)).save_pretrained(root / "init")
    pretrain.save_tokenizer(tok, root / "init")
    write_jsonl(toy.qa_rows(notes), root / "pairs.jsonl")
    return root


def _args(root: Path, out: Path) -> list[str]:
    return ["--model_name_or_path", str(root / "init"), "--data_path", str(root / "pairs.jsonl"),
            "--model_max_length", "512", "--output_dir", str(out), "--max_steps", "4", "--save_strategy", "steps",
            "--save_steps", "2", "--per_device_train_batch_size", "2", "--global_batch_size", "0", "--use_cpu",
            "--bf16", "False", "--activation_checkpointing", "False", "--ddp_backend", "gloo",
            "--learning_rate", "1e-3", "--optim", "adamw_torch", "--report_to", "none", "--disable_tqdm", "True",
            "--dataloader_num_workers", "0", "--seed", "3"]


def test_torchrun_two_processes_interrupted_and_resumed_equals_uninterrupted(setup):
    straight, resumed = setup / "straight", setup / "resumed"
    a = _torchrun(["-m", "train.finetune"], _args(setup, straight))
    assert a.returncode == 0, a.stderr[-3000:]

    crashed = _torchrun(["tests/ddp_crash_after.py", "2"], _args(setup, resumed))
    assert crashed.returncode != 0  # died after checkpoint-2, like a lost node
    assert (resumed / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (resumed / "checkpoint-4").exists() and not (resumed / "model.safetensors").exists()
    assert (resumed / "checkpoint-2" / "tokenizer.model").is_file()  # intermediate checkpoints carry it

    b = _torchrun(["-m", "train.finetune"], [*_args(setup, resumed), "--resume_from_checkpoint", "last"])
    assert b.returncode == 0, b.stderr[-3000:]

    wa, wb = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    init = load_file(setup / "init" / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "resumed weights differ from the uninterrupted run"
    assert any(not torch.equal(wa[k], init[k]) for k in wa)  # it did train
    assert (straight / "checkpoint-4" / "tokenizer.model").is_file() and (straight / "tokenizer.model").is_file()


def test_torchrun_lora_merges_on_rank_zero_between_barriers(setup):
    """Both ranks train LoRA, wait for the adapter, rank 0 merges, both wait for the merge and exit cleanly."""
    out = setup / "lora"
    args = _args(setup, out)
    args[args.index("--max_steps") + 1] = "2"
    args[args.index("--save_strategy") + 1] = "no"
    lora = ["--lora", "--lora_r", "4", "--lora_target_modules", "q_proj,v_proj"]
    run = _torchrun(["-m", "train.finetune"], [*args, *lora])
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "adapter" / "tokenizer.model").is_file()
    merged, init = load_file(out / "model.safetensors"), load_file(setup / "init" / "model.safetensors")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged[key], init[key])  # the adapter is merged into q_proj
    assert torch.equal(merged["model.layers.0.mlp.up_proj.weight"], init["model.layers.0.mlp.up_proj.weight"])
